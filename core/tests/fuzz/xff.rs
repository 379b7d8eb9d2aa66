//! The client address (`ip::client_address`) from the downstream peer and an
//! `X-Forwarded-For` value a client wrote, and the address lists of the
//! configuration and of API-key answers (`ip::IpList::parse`).
//!
//! Input layout: byte 0 is the trusted hops (0 to 70), byte 1 bit 0 whether
//! Envoy appended its entry, then the peer, a `\n`, and the X-Forwarded-For
//! value.
//!
//! Properties: a value over `MAX_XFF_BYTES` or more hops than
//! `MAX_XFF_ENTRIES` is never read into an address; an address returned is
//! canonical (no IPv4-mapped IPv6); with no trusted hop it is the peer;
//! otherwise it is one of the entries as written (an IP address, optionally
//! bracketed and with a port), never one from an entry that was not UTF-8;
//! and a network that `IpList::parse` accepts contains its own address.

use std::net::IpAddr;

use edge_auth_core::policy::ip::{client_address, IpList, MAX_XFF_BYTES, MAX_XFF_ENTRIES};

use super::engine::{Checked, Rng, Target};

const ENTRIES: &[&str] = &[
    "192.0.2.1",
    "198.51.100.7",
    "10.0.0.1",
    "127.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "2001:db8::1",
    "::1",
    "::",
    "::ffff:10.0.0.1",
    "::ffff:192.0.2.1",
    "[2001:db8::1]",
    "[2001:db8::1]:443",
    "192.0.2.1:8080",
    "192.0.2.1:0",
    "192.0.2.1:65536",
    "192.0.2.1:",
    "[::1",
    "::1]",
    "fe80::1%eth0",
    "[fe80::1%25eth0]",
    "1.2.3.4%eth0",
    "01.2.3.4",
    "1.2.3",
    "0x7f.0.0.1",
    "１.２.３.４",
    "unknown",
    "_hidden",
    "",
    " ",
    "\t192.0.2.1 ",
    "192.0.2.1/24",
    "10.0.0.0/8",
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "192.0.2.1\u{fffd}",
    "\u{0}",
];

fn generate(rng: &mut Rng) -> Vec<u8> {
    let hops = match rng.below(6) {
        0 => 0,
        1 => rng.below(71) as u8,
        _ => 1 + rng.below(3) as u8,
    };
    let mut out = vec![hops, rng.below(2) as u8];
    out.extend_from_slice(
        rng.pick(&[
            "192.0.2.9:1234",
            "[2001:db8::9]:443",
            "127.0.0.1:5",
            "::ffff:192.0.2.9",
            "bad",
        ])
        .as_bytes(),
    );
    out.push(b'\n');
    let n = rng.count(3, 200);
    for i in 0..n {
        if i > 0 {
            out.extend_from_slice(rng.pick(&[",", ", ", " ,", ",,", ",\t"]).as_bytes());
        }
        out.extend_from_slice(rng.pick(ENTRIES).as_bytes());
    }
    if rng.one_in(4) {
        out.extend_from_slice(rng.pick(&[", 192.0.2.9", ",192.0.2.9:1234", ", 127.0.0.1"]).as_bytes());
    }
    if rng.one_in(15) {
        let pad = MAX_XFF_BYTES - 20 + rng.below(40);
        while out.len() < pad {
            out.extend_from_slice(b", 10.0.0.1");
        }
    }
    out
}

/// The address an entry names, read independently of the code under test:
/// brackets and a port stripped, then the standard library's parser.
fn entry_address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim_matches([' ', '\t']);
    let host = if let Some(rest) = e.strip_prefix('[') {
        rest.split_once(']')?.0
    } else if e.matches(':').count() == 1 {
        e.split_once(':')?.0
    } else {
        e
    };
    host.parse().ok()
}

pub fn check(bytes: &[u8]) -> Checked {
    let (&hops, rest) = bytes.split_first().unwrap_or((&0, &[]));
    let (&appends, rest) = rest.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    let (peer, xff) = text.split_once('\n').unwrap_or((&text, ""));
    let appends = appends & 1 == 1;
    for entry in xff.split(',') {
        if let Ok(list) = IpList::parse(&[entry.to_owned()]) {
            let addr = entry.split('/').next().and_then(|a| a.parse::<IpAddr>().ok());
            match addr {
                Some(a) if list.contains(a) => {}
                _ => return Err(format!("IpList accepted {entry:?} but does not contain its address")),
            }
        }
    }
    let result = client_address(Some(peer), Some(xff), hops, appends);
    let addr = match result {
        Ok(a) => a,
        Err(e) => return Ok(format!("err:{e:?}")),
    };
    if addr.to_canonical() != addr {
        return Err(format!("{addr} is not canonical"));
    }
    if hops == 0 {
        return match entry_address(peer) {
            Some(p) if p.to_canonical() == addr => Ok("ok:peer".into()),
            _ => Err(format!("hops 0 gave {addr}, not the peer {peer:?}")),
        };
    }
    if xff.len() > MAX_XFF_BYTES {
        return Err(format!("an X-Forwarded-For of {} bytes was read", xff.len()));
    }
    if usize::from(hops) > MAX_XFF_ENTRIES {
        return Err(format!("{hops} trusted hops were satisfied"));
    }
    let from = xff
        .split(',')
        .filter(|e| !e.contains('\u{fffd}'))
        .any(|e| entry_address(e).is_some_and(|a| a.to_canonical() == addr));
    if !from {
        return Err(format!("{addr} is not one of the entries of {xff:?}"));
    }
    Ok(format!("ok:hops{}", hops.min(3)))
}

pub fn target() -> Target {
    let seeds: Vec<Vec<u8>> = [
        (1u8, 1u8, "192.0.2.9:1234\n198.51.100.7, 192.0.2.9"),
        (2, 1, "192.0.2.9:1234\n203.0.113.5, 198.51.100.7, 192.0.2.9"),
        (1, 0, "192.0.2.9:1234\n198.51.100.7"),
        (0, 0, "[::ffff:192.0.2.9]:80\n"),
        (1, 1, "127.0.0.1:5\n198.51.100.7, 10.0.0.1"),
    ]
    .iter()
    .map(|(h, a, s)| [&[*h, *a][..], s.as_bytes()].concat())
    .collect();
    Target {
        name: "x_forwarded_for",
        bounded_execs: 50_000,
        max_len: 3 * MAX_XFF_BYTES,
        seeds,
        dictionary: ENTRIES
            .iter()
            .chain([",", ":", "[", "]", "%"].iter())
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
