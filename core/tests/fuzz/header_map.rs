//! The header-map wire format (`header_map::HeaderMap::parse`): the bytes
//! the host hands the filter, with counts and sizes an attacker (or a
//! broken host) could set to anything.
//!
//! Properties: an accepted buffer holds at most one pair per 10 bytes; it is
//! exactly what `serialize` writes for the pairs read (one reading only);
//! every name read is found again by `get`/`values` in any ASCII case.

use edge_auth_core::header_map::{serialize, HeaderMap};

use super::engine::{Checked, Rng, Target};
use super::json::hostile_string;

const NAMES: &[&str] = &[
    ":path",
    ":method",
    "authorization",
    "Authorization",
    "cookie",
    "x-forwarded-for",
    "x-api-key",
    "origin",
    "x-edge-auth-subject",
    "",
    "a\u{0}b",
];

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    9,
    10,
    255,
    256,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x2000_0000,
    0x1fff_ffff,
];

fn generate(rng: &mut Rng) -> Vec<u8> {
    let n = rng.count(4, 300);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|_| {
            let name = if rng.one_in(5) {
                hostile_string(rng)
            } else {
                rng.pick(NAMES).to_string()
            };
            let value = match rng.below(4) {
                0 => (0..rng.count(8, 5000)).map(|_| rng.next() as u8).collect(),
                _ => hostile_string(rng).into_bytes(),
            };
            (name.into_bytes(), value)
        })
        .collect();
    let mut buf = serialize(pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    // sometimes break the layout: a count or a size set to an interesting number
    if rng.one_in(2) && buf.len() >= 4 {
        let slots = 1 + 2 * n;
        let slot = rng.below(slots);
        let at = if slot == 0 { 0 } else { 4 + (slot - 1) * 4 };
        if at + 4 <= buf.len() {
            let v = if rng.one_in(2) {
                *rng.pick(INTERESTING_U32)
            } else {
                buf.len() as u32 + rng.below(3) as u32 - 1
            };
            buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    if rng.one_in(10) {
        buf.truncate(rng.below(buf.len() + 1));
    }
    buf
}

pub fn check(buf: &[u8]) -> Checked {
    let Some(map) = HeaderMap::parse(buf) else {
        return Ok("refused".into());
    };
    if map.len() > buf.len() / 10 {
        return Err(format!("{} pairs in {} bytes", map.len(), buf.len()));
    }
    let again = serialize(map.iter());
    if !buf.is_empty() && again != buf {
        return Err("the pairs read do not serialise to the buffer".into());
    }
    for (name, value) in map.iter() {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        for spelled in [name.to_ascii_uppercase(), name.to_ascii_lowercase()] {
            if !map.values(&spelled).any(|v| v == value) || map.get(&spelled).is_none() {
                return Err(format!("{name:?} is not found as {spelled:?}"));
            }
        }
    }
    Ok(format!("pairs:{}", map.len().min(4)))
}

pub fn target() -> Target {
    let seeds = vec![
        Vec::new(),
        serialize([(&b":path"[..], &b"/a"[..]), (b":method", b"GET")]),
        serialize([
            (&b"x-forwarded-for"[..], &b"1.2.3.4"[..]),
            (b"x-forwarded-for", b"5.6.7.8"),
        ]),
    ];
    Target {
        name: "header_map",
        bounded_execs: 50_000,
        max_len: 1 << 20,
        seeds,
        dictionary: INTERESTING_U32
            .iter()
            .map(|v| v.to_le_bytes().to_vec())
            .chain(NAMES.iter().map(|s| s.as_bytes().to_vec()))
            .chain([vec![0u8], vec![0, 0, 0, 0]])
            .collect(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
