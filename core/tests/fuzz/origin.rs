//! The `Origin` header (`origin::classify`, `Origin::parse`) and the origin
//! patterns of the configuration and of API-key answers
//! (`OriginPattern::parse`).
//!
//! Properties: `null` is recognised only as the whole value; an accepted
//! origin came from valid UTF-8, is at most `MAX_ORIGIN_BYTES` long, is
//! lower-case `http`/`https` `://` host without its scheme's default port,
//! parses again to itself (idempotence) and is matched by the pattern made
//! from it; a wildcard pattern never matches its own base origin and
//! matches a subdomain of it.

use edge_auth_core::policy::origin::{classify, Origin, OriginHeader, OriginPattern, MAX_ORIGIN_BYTES};

use super::engine::{Checked, Rng, Target};

const SCHEMES: &[&str] = &[
    "https",
    "http",
    "HTTPS",
    "hTTp",
    "ftp",
    "",
    "https:",
    "ws",
    "*",
    "https ",
    "\u{0}http",
];
const HOSTS: &[&str] = &[
    "example.com",
    "app.example.com",
    "EXAMPLE.COM",
    "*.example.com",
    "*",
    "a.*.example.com",
    "*example.com",
    "localhost",
    "127.0.0.1",
    "127.1",
    "0x7f.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[2001:DB8::1]",
    "[::1",
    "::1",
    "example.com.",
    ".example.com",
    "a..b",
    "xn--bcher-kva.example",
    "bücher.example",
    "a_b.example",
    "-a.example",
    "%41.example",
    "user@example.com",
    "example.com/",
    "example.com/path",
    "example.com?x",
    "example.com#f",
    "com",
    "",
    "\u{fffd}.example",
];
const PORTS: &[&str] = &[
    "",
    "",
    "",
    ":443",
    ":80",
    ":8080",
    ":0",
    ":65535",
    ":65536",
    ":",
    ":0080",
    ":+80",
    ":99999999999",
    ":8o",
];

fn generate(rng: &mut Rng) -> Vec<u8> {
    if rng.one_in(15) {
        return rng.pick(&["null", "NULL", " null", "null ", ""]).as_bytes().to_vec();
    }
    let mut s = format!("{}://{}{}", rng.pick(SCHEMES), rng.pick(HOSTS), rng.pick(PORTS));
    if rng.one_in(8) {
        s = s.replacen("://", rng.word(&[":/", ":///", "//", "://:/"]), 1);
    }
    if rng.one_in(20) {
        // around the length limit: more labels in front of the host
        let label = "a".repeat(1 + rng.below(70));
        let target = MAX_ORIGIN_BYTES - 10 + rng.below(20);
        let mut host = String::from("example.com");
        while host.len() + 8 < target {
            host = format!("{label}.{host}");
        }
        s = format!("https://{host}");
    }
    s.into_bytes()
}

pub fn check(bytes: &[u8]) -> Checked {
    let value = String::from_utf8_lossy(bytes);
    let v: &str = &value;
    match classify(Some(v)) {
        OriginHeader::Null if !v.eq_ignore_ascii_case("null") => return Err(format!("{v:?} read as null")),
        OriginHeader::Present(o) if Origin::parse(v).as_ref() != Some(&o) => {
            return Err(format!("classify and parse disagree on {v:?}"))
        }
        _ => {}
    }
    let mut class = String::from("origin:");
    if let Some(o) = Origin::parse(v) {
        class.push_str(o.scheme());
        let text = o.as_str();
        if v.contains('\u{fffd}') || v.len() > MAX_ORIGIN_BYTES {
            return Err(format!("accepted {v:?}"));
        }
        if text.bytes().any(|b| b.is_ascii_uppercase()) || !matches!(o.scheme(), "http" | "https") {
            return Err(format!("{v:?} normalised to {text:?}"));
        }
        if text
            != format!(
                "{}://{}{}",
                o.scheme(),
                o.host(),
                o.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
        {
            return Err(format!("{text:?} is not scheme://host[:port]"));
        }
        let default = if o.scheme() == "https" { 443 } else { 80 };
        if o.port() == Some(default) || o.host().is_empty() {
            return Err(format!("{v:?} normalised to {text:?}"));
        }
        if Origin::parse(text).as_ref() != Some(&o) {
            return Err(format!("not idempotent: {text:?}"));
        }
        match OriginPattern::parse(text) {
            Ok(p) if p.matches(&o) && !p.is_wildcard() => {}
            other => return Err(format!("the pattern {text:?} gives {other:?}")),
        }
    } else {
        class.push_str("refused");
    }
    class.push_str(" pattern:");
    match OriginPattern::parse(v) {
        Err(_) => class.push_str("refused"),
        Ok(p) if p.is_wildcard() => {
            class.push_str("wildcard");
            let base_text = p.as_str().replacen("*.", "", 1);
            let base =
                Origin::parse(&base_text).ok_or_else(|| format!("wildcard {:?} has no base origin", p.as_str()))?;
            if p.matches(&base) {
                return Err(format!("{:?} matches its own base {base_text:?}", p.as_str()));
            }
            let sub = Origin::parse(&p.as_str().replacen('*', "sub", 1))
                .ok_or_else(|| format!("no subdomain origin for {:?}", p.as_str()))?;
            if !p.matches(&sub) {
                return Err(format!("{:?} does not match {:?}", p.as_str(), sub.as_str()));
            }
        }
        Ok(p) => {
            class.push_str("exact");
            if Origin::parse(p.as_str()).is_none_or(|o| !p.matches(&o)) {
                return Err(format!("the exact pattern {:?} does not match itself", p.as_str()));
            }
        }
    }
    Ok(class)
}

pub fn target() -> Target {
    let seeds = [
        "https://app.example.com",
        "http://localhost:8080",
        "https://*.example.com",
        "https://*.example.com:8443",
        "http://[::1]:3000",
        "null",
        "HTTPS://APP.EXAMPLE.COM:443",
    ];
    Target {
        name: "origin",
        bounded_execs: 60_000,
        max_len: 3 * MAX_ORIGIN_BYTES,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dictionary: SCHEMES
            .iter()
            .chain(HOSTS)
            .chain(PORTS)
            .chain(["://", ".", "*.", ":", "[", "]", "@", "/"].iter())
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
