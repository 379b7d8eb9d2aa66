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
