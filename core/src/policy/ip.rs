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
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn list(entries: &[&str]) -> IpList {
        let owned: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        match IpList::parse(&owned) {
            Ok(l) => l,
            Err((i, m)) => panic!("{entries:?} refused at {i}: {m}"),
        }
    }

    fn refused(entry: &str) -> String {
        let owned = vec!["10.0.0.0/8".to_string(), entry.to_string()];
        match IpList::parse(&owned) {
            Ok(l) => panic!("{entry:?} accepted as {l:?}"),
            Err((i, m)) => {
                assert_eq!(i, 1, "{entry:?}: {m}");
                m
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, xff: &str, hops: u8) -> Result<IpAddr, ClientAddrError> {
        client_address(Some(peer), Some(xff), hops, true)
    }

    fn ok(peer: &str, xff: &str, hops: u8) -> String {
        match client(peer, xff, hops) {
            Ok(a) => a.to_string(),
            Err(e) => panic!("peer {peer:?} xff {xff:?} hops {hops}: {e}"),
        }
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        let l = list(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::1",
            "0.0.0.0/0",
            "::/0",
            "192.0.2.0/32",
        ]);
        assert_eq!(l.v4.len(), 4);
        assert_eq!(l.v6.len(), 3);
        assert_eq!(l.v4[1], "192.0.2.7/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.v6[1], "::1/128".parse::<Ipv6Net>().unwrap());
        assert!(!l.is_empty());
        assert!(IpList::parse(&[]).unwrap().is_empty());
        assert_eq!(IpList::default(), IpList::parse(&[]).unwrap());
    }

    #[test]
    fn mapped_entries_are_stored_as_ipv4() {
        assert_eq!(list(&["::ffff:10.0.0.0/104"]), list(&["10.0.0.0/8"]));
        assert_eq!(list(&["::ffff:192.0.2.7"]), list(&["192.0.2.7"]));
        assert_eq!(list(&["::ffff:0:0/96"]), list(&["0.0.0.0/0"]));
        assert_eq!(list(&["::ffff:c000:200/120"]), list(&["192.0.2.0/24"]));
    }

    #[test]
    fn refuses_bad_entries() {
        assert_eq!(refused(""), "empty entry");
        let m = refused("10.0.0.1/8");
        assert!(m.contains("host bits") && m.contains("10.0.0.0/8"), "{m}");
        let m = refused("2001:db8::1/32");
        assert!(m.contains("host bits") && m.contains("2001:db8::/32"), "{m}");
        let m = refused("::ffff:10.0.0.1/104");
        assert!(m.contains("host bits") && m.contains("::ffff:10.0.0.0/104"), "{m}");
        assert!(refused("::ffff:10.0.0.0/90").contains("host bits"));
        assert!(refused("10.0.0.0/33").contains("longer than 32"));
        assert!(refused("::/129").contains("longer than 128"));
        assert!(refused("10.0.0.0/255").contains("longer than 32"));
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0.0/-1",
            "10.0.0.0/1000",
            "10.0.0.0/8/8",
            "10.0.0.0/x",
        ] {
            assert!(refused(bad).contains("prefix length must be"), "{bad}");
        }
        for bad in [
            "junk",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "localhost",
            "1.2.3.4.5",
            ":::",
            "/8",
            "0x0a000001",
        ] {
            assert!(refused(bad).contains("not an IP address"), "{bad}");
        }
        for bad in [
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "10.0.0.0 /8",
            "10.0.0.0/ 8",
            "\t::1",
            "::1\n",
        ] {
            assert!(refused(bad).contains("whitespace"), "{bad:?}");
        }
        for bad in ["fe80::1%eth0", "fe80::1%1/128"] {
            assert!(refused(bad).contains("zone id"), "{bad}");
        }
        for bad in ["10.0.0.1:80", "[::1]", "[::1]:80", "[::1]/128", "10.0.0.0:80/8"] {
            assert!(refused(bad).contains("ports and brackets"), "{bad}");
        }
    }

    #[test]
    fn contains_v4_and_v6() {
        let l = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::",
            "2001:db8:ffff::1",
            "::1",
        ] {
            assert!(l.contains(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.0", "9.255.255.255", "192.0.2.8", "2001:db9::", "::2", "::"] {
            assert!(!l.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn contains_mapped_both_ways() {
        // A mapped address matches an IPv4 entry.
        let v4 = list(&["10.0.0.0/8"]);
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
        assert!(!v4.contains(ip("::ffff:11.1.2.3")));
        // A mapped entry matches both an IPv4 and a mapped address.
        let mapped = list(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("11.1.2.3")));
        // IPv6 entries never match IPv4 clients, mapped or not.
        let v6 = list(&["::/0"]);
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        assert!(!v6.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn deny_wins_and_empty_allow_allows() {
        let open = IpPolicy::default();
        assert!(open.permits(ip("203.0.113.1")));
        assert!(open.permits(ip("::1")));

        let deny_only = IpPolicy {
            deny: list(&["10.0.0.0/8"]),
            ..IpPolicy::default()
        };
        assert!(!deny_only.permits(ip("10.1.2.3")));
        assert!(!deny_only.permits(ip("::ffff:10.1.2.3")));
        assert!(deny_only.permits(ip("11.1.2.3")));

        let both = IpPolicy {
            allow: list(&["10.0.0.0/8", "2001:db8::/32"]),
            deny: list(&["10.9.0.0/16"]),
            trusted_hops: 0,
            envoy_appends: true,
        };
        assert!(both.permits(ip("10.1.2.3")));
        assert!(both.permits(ip("2001:db8::5")));
        assert!(!both.permits(ip("10.9.1.1")), "deny wins over allow");
        assert!(!both.permits(ip("11.1.2.3")), "not in a non-empty allow list");
        assert!(!both.permits(ip("::1")));
    }

    #[test]
    fn error_text_is_header_safe() {
        for e in [
            ClientAddrError::NoPeer,
            ClientAddrError::BadPeer,
            ClientAddrError::MissingForwardedFor,
            ClientAddrError::TooFewHops,
            ClientAddrError::MalformedEntry,
            ClientAddrError::NotAppendedByEnvoy,
            ClientAddrError::PeerFromHeader,
            ClientAddrError::AppendsButPeerFromHeader,
        ] {
            let s = e.as_str();
            assert!(!s.is_empty());
            assert!(
                s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{s}"
            );
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn no_trusted_hops_is_the_peer() {
        assert_eq!(ok("192.0.2.10:54321", "", 0), "192.0.2.10");
        assert_eq!(ok("[::1]:1234", "", 0), "::1");
        assert_eq!(ok("[::ffff:10.1.2.3]:1234", "", 0), "10.1.2.3");
        assert_eq!(ok("192.0.2.10", "", 0), "192.0.2.10");
        assert_eq!(ok("2001:db8::1", "", 0), "2001:db8::1");
        // XFF is never read, even when forged or garbage.
        assert_eq!(ok("192.0.2.10:1", "1.1.1.1, 192.0.2.10", 0), "192.0.2.10");
        assert_eq!(
            client_address(Some("192.0.2.10:1"), None, 0, true),
            Ok(ip("192.0.2.10"))
        );
        assert_eq!(ok("192.0.2.10:1", "garbage", 0), "192.0.2.10");
        assert_eq!(ok("192.0.2.10:1", &"x".repeat(10_000), 0), "192.0.2.10");
    }

    #[test]
    fn peer_errors() {
        assert_eq!(
            client_address(None, Some("1.2.3.4"), 0, true),
            Err(ClientAddrError::NoPeer)
        );
        assert_eq!(
            client_address(None, Some("1.2.3.4"), 1, true),
            Err(ClientAddrError::NoPeer)
        );
        for bad in [
            "",
            "localhost:80",
            "/var/run/envoy.sock",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[::1",
            "::1]:80",
            " 1.2.3.4",
        ] {
            assert_eq!(client(bad, "1.2.3.4", 0), Err(ClientAddrError::BadPeer), "{bad:?}");
            assert_eq!(client(bad, "1.2.3.4", 1), Err(ClientAddrError::BadPeer), "{bad:?}");
        }
    }

    /// The examples from Envoy's x-forwarded-for documentation, with the
    /// downstream 192.0.2.5 appended by Envoy as the filter sees it.
    #[test]
    fn envoy_doc_examples() {
        let seen = "203.0.113.128, 203.0.113.10, 203.0.113.1,192.0.2.5";
        assert_eq!(ok("192.0.2.5:4321", seen, 0), "192.0.2.5");
        assert_eq!(ok("192.0.2.5:4321", seen, 1), "203.0.113.1");
        assert_eq!(ok("192.0.2.5:4321", seen, 2), "203.0.113.10");
        assert_eq!(ok("192.0.2.5:4321", seen, 3), "203.0.113.128");
        assert_eq!(client("192.0.2.5:4321", seen, 4), Err(ClientAddrError::TooFewHops));
    }

    #[test]
    fn forged_left_entries_are_ignored() {
        // The client sent "6.6.6.6, 7.7.7.7"; the trusted proxy 198.51.100.2
        // appended the real client 203.0.113.9; Envoy appended the proxy.
        let xff = "6.6.6.6, 7.7.7.7, 203.0.113.9, 198.51.100.2";
        assert_eq!(ok("198.51.100.2:1", xff, 1), "203.0.113.9");
        // Two trusted proxies: 198.51.100.1 appended the client, then
        // 198.51.100.2 appended 198.51.100.1.
        let xff = "6.6.6.6, 7.7.7.7, 203.0.113.9, 198.51.100.1, 198.51.100.2";
        assert_eq!(ok("198.51.100.2:1", xff, 2), "203.0.113.9");
        // A forged entry equal to a trusted address changes nothing.
        let xff = "198.51.100.1, 203.0.113.9, 198.51.100.2";
        assert_eq!(ok("198.51.100.2:1", xff, 1), "203.0.113.9");
    }

    #[test]
    fn several_headers_joined_behave_as_one_list() {
        let joined = ["6.6.6.6", "203.0.113.9, 198.51.100.1", "198.51.100.2"].join(",");
        assert_eq!(ok("198.51.100.2:1", &joined, 1), "198.51.100.1");
        assert_eq!(ok("198.51.100.2:1", &joined, 2), "203.0.113.9");
        assert_eq!(ok("198.51.100.2:1", &joined, 3), "6.6.6.6");
    }

    #[test]
    fn malformed_entries_inside_and_outside_the_trusted_range() {
        let peer = "198.51.100.2:1";
        // Outside: client-controlled garbage is ignored.
        for left in [
            "unknown",
            "",
            "_hidden",
            "example.com",
            "1.2.3.4:99999",
            "fe80::1%eth0",
            "\"x\"",
        ] {
            let xff = format!("{left}, 203.0.113.9, 198.51.100.1, 198.51.100.2");
            assert_eq!(ok(peer, &xff, 2), "203.0.113.9", "{xff:?}");
        }
        // Inside, at the chosen position or to its right.
        for xff in [
            "1.1.1.1, unknown, 198.51.100.1, 198.51.100.2",
            "1.1.1.1, 203.0.113.9, example.com, 198.51.100.2",
            "1.1.1.1, ,198.51.100.1, 198.51.100.2",
            "1.1.1.1,,198.51.100.1, 198.51.100.2",
            "1.1.1.1, 203.0.113.9,,198.51.100.2",
            "1.1.1.1, fe80::1%eth0, 198.51.100.1, 198.51.100.2",
            "1.1.1.1, 203.0.113.9:99999, 198.51.100.1, 198.51.100.2",
            "1.1.1.1, 203.0.113.9, 198.51.100.1, 198.51.100.2,",
        ] {
            assert_eq!(client(peer, xff, 2), Err(ClientAddrError::MalformedEntry), "{xff:?}");
        }
        assert_eq!(client(peer, ",", 1), Err(ClientAddrError::MalformedEntry));
    }

    #[test]
    fn too_few_entries_never_falls_back() {
        let peer = "198.51.100.2:1";
        // Only Envoy's own entry: a direct client on a route expecting a proxy.
        assert_eq!(client(peer, "198.51.100.2", 1), Err(ClientAddrError::TooFewHops));
        assert_eq!(
            client(peer, "203.0.113.9, 198.51.100.2", 2),
            Err(ClientAddrError::TooFewHops)
        );
        assert_eq!(client(peer, "203.0.113.9", 2), Err(ClientAddrError::NotAppendedByEnvoy));
        assert_eq!(
            client(peer, "1.1.1.1, 203.0.113.9, 198.51.100.2", 65),
            Err(ClientAddrError::TooFewHops)
        );
        assert_eq!(
            client(peer, "1.1.1.1, 203.0.113.9, 198.51.100.2", u8::MAX),
            Err(ClientAddrError::TooFewHops)
        );
    }

    #[test]
    fn missing_or_empty_header() {
        let peer = "198.51.100.2:1";
        assert_eq!(
            client_address(Some(peer), None, 1, true),
            Err(ClientAddrError::MissingForwardedFor)
        );
        for blank in ["", " ", "\t ", "  \t"] {
            assert_eq!(
                client(peer, blank, 1),
                Err(ClientAddrError::MissingForwardedFor),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn whitespace_variants() {
        let peer = "198.51.100.2:1";
        for xff in [
            "203.0.113.9,198.51.100.2",
            "203.0.113.9, 198.51.100.2",
            "  203.0.113.9  ,\t198.51.100.2\t",
            "203.0.113.9\t,198.51.100.2",
            "1.1.1.1 ,  203.0.113.9 , 198.51.100.2 ",
        ] {
            assert_eq!(ok(peer, xff, 1), "203.0.113.9", "{xff:?}");
        }
        // Whitespace inside an entry is not trimmed away.
        assert_eq!(
            client(peer, "203.0. 113.9, 198.51.100.2", 1),
            Err(ClientAddrError::MalformedEntry)
        );
        assert_eq!(
            client(peer, "203.0.113.9\n, 198.51.100.2", 1),
            Err(ClientAddrError::MalformedEntry)
        );
    }

    #[test]
    fn ports_and_brackets() {
        let peer = "198.51.100.2:1";
        for (entry, want) in [
            ("203.0.113.9:443", "203.0.113.9"),
            ("[2001:db8::9]", "2001:db8::9"),
            ("[2001:db8::9]:443", "2001:db8::9"),
            ("2001:db8::9", "2001:db8::9"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("[::ffff:10.1.2.3]:80", "10.1.2.3"),
            ("203.0.113.9:0", "203.0.113.9"),
            ("203.0.113.9:65535", "203.0.113.9"),
        ] {
            assert_eq!(ok(peer, &format!("{entry}, 198.51.100.2"), 1), want, "{entry}");
        }
        for entry in [
            "203.0.113.9:",
            "203.0.113.9:65536",
            "203.0.113.9:+1",
            "203.0.113.9:http",
            "[203.0.113.9]",
            "[2001:db8::9",
            "2001:db8::9]",
            "[2001:db8::9]443",
            "[2001:db8::9]:",
            "2001:db8:::9",
            "[fe80::1%eth0]:80",
            "203.0.113.9:80:80",
        ] {
            assert_eq!(
                client(peer, &format!("{entry}, 198.51.100.2"), 1),
                Err(ClientAddrError::MalformedEntry),
                "{entry}"
            );
        }
    }

    #[test]
    fn ipv6_peer() {
        assert_eq!(ok("[::1]:1234", "203.0.113.9, ::1", 1), "203.0.113.9");
        assert_eq!(ok("[2001:db8::2]:1234", "2001:db8::9, 2001:db8::2", 1), "2001:db8::9");
        // A mapped peer matches its IPv4 entry, and vice versa.
        assert_eq!(
            ok("[::ffff:198.51.100.2]:1", "203.0.113.9, 198.51.100.2", 1),
            "203.0.113.9"
        );
        assert_eq!(
            ok("198.51.100.2:1", "203.0.113.9, ::ffff:198.51.100.2", 1),
            "203.0.113.9"
        );
    }

    #[test]
    fn envoys_own_entry_is_dropped_and_checked() {
        // Envoy appended the peer: dropped, the client is behind it.
        assert_eq!(
            ok("198.51.100.2:1", "203.0.113.9, 198.51.100.1, 198.51.100.2", 1),
            "198.51.100.1"
        );
        assert_eq!(
            ok("198.51.100.2:1", "203.0.113.9, 198.51.100.1, 198.51.100.2:1", 1),
            "198.51.100.1"
        );
        // A rightmost entry that is not the peer: Envoy did not append, refuse.
        assert_eq!(
            client("198.51.100.2:1", "203.0.113.9, 198.51.100.1", 1),
            Err(ClientAddrError::NotAppendedByEnvoy)
        );
        // A loopback peer: Envoy appends its own local address instead, which cannot be checked.
        assert_eq!(ok("127.0.0.1:5000", "203.0.113.9, 192.0.2.2", 1), "203.0.113.9");
        assert_eq!(ok("[::1]:5000", "203.0.113.9, 10.0.0.5", 1), "203.0.113.9");
        assert_eq!(
            client("127.0.0.1:5000", "203.0.113.9, junk", 1),
            Err(ClientAddrError::MalformedEntry)
        );
        // Only one entry is ever dropped.
        assert_eq!(
            ok("198.51.100.2:1", "203.0.113.9, 198.51.100.2, 198.51.100.2", 1),
            "198.51.100.2"
        );
        // Without Envoy's append (use_remote_address: false) nothing is dropped.
        let plain = |xff: &str, hops| client_address(Some("198.51.100.2:1"), Some(xff), hops, false);
        assert_eq!(plain("203.0.113.9, 198.51.100.1", 1), Ok(ip("198.51.100.1")));
        assert_eq!(plain("203.0.113.9, 198.51.100.1", 2), Ok(ip("203.0.113.9")));
        assert_eq!(plain("203.0.113.9", 2), Err(ClientAddrError::TooFewHops));
        // The result is canonicalised.
        assert_eq!(ok("198.51.100.2:1", "::ffff:10.1.2.3, 198.51.100.2", 1), "10.1.2.3");
        let mapped = client("198.51.100.2:1", "::ffff:10.1.2.3, 198.51.100.2", 1).unwrap();
        assert!(list(&["10.0.0.0/8"]).contains(mapped));
    }

    /// Issue 11, item 3: under Envoy's default HCM (`use_remote_address: false`), with
    /// `xff_num_trusted_hops` or an original IP detection extension, Envoy replaces
    /// `source.address` with an X-Forwarded-For entry, written `ip:0` (no TCP peer has port 0).
    /// A rule without trusted hops would check that client-written address: refused, as is
    /// `envoy_appends` with such a peer. Rules that count hops without Envoy's append read
    /// X-Forwarded-For as ever.
    #[test]
    fn a_peer_envoy_took_from_a_header_is_never_the_client() {
        for peer in ["6.6.6.6:0", "[2001:db8::1]:0", "[::ffff:10.1.2.3]:0", "127.0.0.1:0"] {
            for xff in [None, Some("6.6.6.6"), Some("203.0.113.9, 6.6.6.6")] {
                for appends in [true, false] {
                    assert_eq!(
                        client_address(Some(peer), xff, 0, appends),
                        Err(ClientAddrError::PeerFromHeader),
                        "{peer} {xff:?}"
                    );
                }
            }
            assert_eq!(
                client_address(Some(peer), Some("203.0.113.9, 6.6.6.6"), 1, true),
                Err(ClientAddrError::AppendsButPeerFromHeader),
                "{peer}"
            );
        }
        // use_remote_address: false with the proxies counted in the rule: the nearest proxy's entry
        let plain = |xff: &str, hops| client_address(Some("6.6.6.6:0"), Some(xff), hops, false);
        assert_eq!(plain("203.0.113.9, 6.6.6.6", 1), Ok(ip("6.6.6.6")));
        assert_eq!(plain("203.0.113.9, 6.6.6.6", 2), Ok(ip("203.0.113.9")));
        // a real connection's port, whatever it is, and a bare address (no port to tell by)
        for peer in ["192.0.2.10:1", "192.0.2.10:65535", "[::1]:80", "192.0.2.10", "::1"] {
            assert!(client_address(Some(peer), None, 0, true).is_ok(), "{peer}");
        }
        assert_eq!(peer_port("1.2.3.4:0"), Some(0));
        assert_eq!(peer_port("[::1]:0"), Some(0));
        assert_eq!(peer_port("[::1]:8080"), Some(8080));
        assert_eq!(peer_port("1.2.3.4"), None);
        assert_eq!(peer_port("2001:db8::1"), None);
        assert_eq!(peer_port("[::1]"), None);
        assert_eq!(peer_port("1.2.3.4:99999"), None);
    }

    #[test]
    fn only_configuration_problems_have_an_operator_hint() {
        use ClientAddrError as E;
        for e in [E::PeerFromHeader, E::AppendsButPeerFromHeader, E::NotAppendedByEnvoy] {
            let hint = e.operator_hint().unwrap_or_default();
            assert!(hint.starts_with("edge-auth: "), "{e:?}");
            assert!(
                hint.contains("envoy_appends_xff") || hint.contains("trusted_hops"),
                "{e:?}"
            );
        }
        for e in [
            E::NoPeer,
            E::BadPeer,
            E::MissingForwardedFor,
            E::TooFewHops,
            E::MalformedEntry,
        ] {
            assert_eq!(e.operator_hint(), None, "a client causes {e:?}");
        }
    }

    #[test]
    fn oversized_header_is_malformed() {
        let peer = "198.51.100.2:1";
        let mut xff = "1.1.1.1, ".repeat(1200);
        xff.push_str("203.0.113.9, 198.51.100.2");
        assert!(xff.len() > 10_000);
        assert_eq!(client(peer, &xff, 1), Err(ClientAddrError::MalformedEntry));
        assert_eq!(
            client(peer, &" ".repeat(10_000), 1),
            Err(ClientAddrError::MalformedEntry)
        );
        // Exactly at the limit is fine.
        let mut xff = " ".repeat(MAX_XFF_BYTES - "203.0.113.9,198.51.100.2".len());
        xff.push_str("203.0.113.9,198.51.100.2");
        assert_eq!(xff.len(), MAX_XFF_BYTES);
        assert_eq!(ok(peer, &xff, 1), "203.0.113.9");
    }

    #[test]
    fn a_thousand_entries() {
        let peer = "198.51.100.2:1";
        let mut entries: Vec<String> = (0..1000)
            .map(|i| {
                if i < 900 {
                    "1.2.3.4".to_string()
                } else {
                    format!("9.9.9.{}", i - 900)
                }
            })
            .collect();
        entries[0] = "garbage".to_string();
        entries.push("198.51.100.2".to_string());
        let xff = entries.join(",");
        assert!(xff.len() <= MAX_XFF_BYTES, "{}", xff.len());
        assert_eq!(ok(peer, &xff, 1), "9.9.9.99");
        assert_eq!(ok(peer, &xff, 2), "9.9.9.98");
        assert_eq!(ok(peer, &xff, 64), "9.9.9.36");
        assert_eq!(client(peer, &xff, 65), Err(ClientAddrError::TooFewHops));
    }
}
