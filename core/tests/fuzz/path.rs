//! Path normalisation (`path::normalize`): the `:path` a client sends, read
//! as the shell reads it (lossily, as UTF-8).
//!
//! Properties of an accepted path: its path part came from valid UTF-8 and
//! is at most `MAX_PATH_BYTES` bytes; the query is returned as sent; the result
//! starts with `/`, is no longer than the path part, has no empty, `.` or
//! `..` segment before the end, no segment ending in `.`, only printable
//! ASCII without `\`, `#`, `?` or `;`, and no escape of an unreserved
//! character, `/`, `\` or NUL; decoded once more it holds no `%` and is
//! UTF-8 without controls (docs 4.1: a second decoder reads what the first
//! read); normalising it again gives it back unchanged
//! (idempotence); and the decision on it (with its query) is the decision
//! on the original.

use std::borrow::Cow;

use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Request, State};
use edge_auth_core::policy::path::{normalize, MAX_PATH_BYTES};
use serde_json::json;

use super::engine::{Checked, Rng, Target};

/// Segments a router takes as they are, or resolves.
const BENIGN: &[&str] = &[
    "a", "api", "admin", "public", "b", "m", "x.y", "~u", "", ".", "..", "%2e", "%41", "%7e",
];

const SEGMENTS: &[&str] = &[
    "a",
    "api",
    "admin",
    "public",
    "b",
    "m",
    "x.y",
    "~u",
    "",
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    ".%2e",
    "%2e.",
    "%2e%2e",
    "%2E%2e",
    "%252e",
    "%252e%252e",
    "%25%32%65",
    "%252E",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%00",
    "%25",
    "%41",
    "%61dmin",
    "%7e",
    "%7E",
    "%C3%A9",
    "é",
    "..;",
    ";x",
    "a;b",
    "\\",
    "..\\",
    "#",
    " ",
    "\t",
    "%20",
    "%zz",
    "%",
    "%2",
    "．",
    "%ef%bc%8e",
    ":",
    "@",
    "!",
    "$",
    "&",
    "'",
    "(",
    "*",
    "+",
    ",",
    "=",
    "a.",
    "a%2e",
    "%u002e",
    "%c0%ae",
    "\u{0}",
];

const QUERIES: &[&str] = &["", "x=1", "a=/../admin", "%2e%2e", "?", "#f", "access_token=t", "é"];

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut s = String::new();
    if rng.one_in(20) {
        s.push_str(rng.word(&["", "*", "http://x/", "a/b", "%2fa", "\\a", "?x"]));
    }
    let segments = rng.count(4, 40);
    for _ in 0..segments.max(1) {
        s.push_str(rng.word(&["/", "/", "/", "/", "//", "///"]));
        let seg = if rng.one_in(3) {
            *rng.pick(SEGMENTS)
        } else {
            *rng.pick(BENIGN)
        };
        s.push_str(seg);
        if rng.one_in(6) {
            s.push_str(rng.word(SEGMENTS));
        }
    }
    if rng.one_in(10) {
        // around the length limit
        let target = MAX_PATH_BYTES - 8 + rng.below(16);
        while s.len() + 2 <= target {
            s.push_str("/a");
        }
        if s.len() < target {
            s.push('b');
        }
    }
    if rng.one_in(3) {
        s.push('?');
        s.push_str(rng.word(QUERIES));
    }
    s.into_bytes()
}

/// Rules whose decisions differ by path: public prefixes, an exact path, a
/// method-bound rule, token-protected prefixes; no default rule.
fn decision_config() -> &'static Config {
    thread_local! {
        static CFG: &'static Config = {
            let doc = json!({
                "providers": [{"name": "p", "issuer": "https://i", "audiences": ["a"], "algorithms": ["HS256"],
                               "hmac_secrets": [{"env": "S", "alg": "HS256"}]}],
                "token_cache": {"max_entries": 0},
                "rules": [
                    {"name": "public", "match": {"prefix": "/public/"}, "public": true},
                    {"name": "exact", "match": {"path": "/a/b"}, "public": true},
                    {"name": "post", "match": {"prefix": "/m/", "methods": ["POST"]}, "public": true},
                    {"name": "admin", "match": {"prefix": "/admin"}, "jwt": {"providers": ["p"]}},
                    {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"providers": ["p"]}},
                    {"name": "root", "match": {"path": "/"}, "public": true}
                ]
            });
            let env = |n: &str| (n == "S").then(|| "s".repeat(32));
            Box::leak(Box::new(config::parse(doc.to_string().as_bytes(), &env).expect("the fuzz configuration")))
        };
    }
    CFG.with(|c| *c)
}

/// A request with no credential and no client headers.
struct Bare;

impl Request for Bare {
    fn header(&mut self, _name: &str) -> Option<String> {
        None
    }

    fn forwarded_for(&mut self) -> Option<String> {
        None
    }

    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:40000".to_owned())
    }
}

fn decision(method: &str, path: &str) -> String {
    let cfg = decision_config();
    let mut st = State::new(cfg);
    let attempt = Attempt {
        method,
        path,
        now_ms: 1_800_000_000_000,
        may_await: true,
        answer: None,
    };
    let o = decide(cfg, &mut st, &attempt, &mut Bare);
    format!("{:?}", o.verdict)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Every `%XX` decoded (the path was checked to hold only valid escapes).
fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The properties of one accepted path (`Ok` carries an outcome class).
pub fn check_str(raw: &str) -> Checked {
    let n = match normalize(raw) {
        Ok(n) => n,
        Err(e) => return Ok(format!("err:{e:?}")),
    };
    let p: &str = &n.path;
    let (raw_path, raw_query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    // (the query is never examined: it may hold anything)
    if raw_path.contains('\u{fffd}') {
        return Err("a path part that was not UTF-8 (U+FFFD) was accepted".into());
    }
    if raw_path.len() > MAX_PATH_BYTES {
        return Err(format!("a path part of {} bytes was accepted", raw_path.len()));
    }
    if n.query != raw_query {
        return Err(format!("query {:?} is not the one sent ({raw_query:?})", n.query));
    }
    if !p.starts_with('/') || p.len() > raw_path.len() {
        return Err(format!("normalised to {p:?}"));
    }
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if (seg.is_empty() && !last) || *seg == "." || *seg == ".." || seg.ends_with('.') {
            return Err(format!("segment {seg:?} left in {p:?}"));
        }
    }
    let b = p.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if !(0x21..0x7f).contains(&c) || matches!(c, b'\\' | b'#' | b'?' | b';') {
            return Err(format!("byte {c:#x} in {p:?}"));
        }
        if c == b'%' {
            let v = match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => h << 4 | l,
                _ => return Err(format!("a bad escape in {p:?}")),
            };
            if is_unreserved(v) || matches!(v, b'/' | b'\\' | 0) {
                return Err(format!("escape %{v:02X} left in {p:?}"));
            }
        }
    }
    // docs 4.1: decoded once, the path holds no `%` (a second decoder reads
    // what the first read), and what it decodes to is UTF-8 without controls
    let once = percent_decode(b);
    if once.contains(&b'%') || once.iter().any(|&c| c < 0x20 || c == 0x7f) || std::str::from_utf8(&once).is_err() {
        return Err(format!("{p:?} decodes once to {:?}", String::from_utf8_lossy(&once)));
    }
    match normalize(p) {
        Ok(again) if again.path == p && again.query.is_none() => {}
        other => return Err(format!("not idempotent: {p:?} normalises to {other:?}")),
    }
    let normalised = match raw_query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    for method in ["GET", "POST"] {
        let (before, after) = (decision(method, raw), decision(method, &normalised));
        if before != after {
            return Err(format!(
                "{method} {raw:?} decides {before}, its normal form {normalised:?} {after}"
            ));
        }
    }
    let changed = matches!(n.path, Cow::Owned(_)) || p.len() != raw_path.len();
    Ok(format!(
        "ok:{}:{}",
        if changed { "changed" } else { "same" },
        decision("GET", raw).len() % 7
    ))
}

pub fn check(bytes: &[u8]) -> Checked {
    check_str(&String::from_utf8_lossy(bytes))
}

pub fn target() -> Target {
    let seeds = [
        "/",
        "/public/x",
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%252e%252e/admin/x",
        "//admin",
        "/a/./b",
        "/a/b/..",
        "/admin;x/",
        "/admin./",
        "/%61dmin/x",
        "/api/v1/users?x=/../admin",
        "/m/x",
        "/a%2fb",
        "/a\\b",
    ];
    Target {
        name: "path",
        bounded_execs: 60_000,
        max_len: 3 * MAX_PATH_BYTES,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dictionary: SEGMENTS
            .iter()
            .chain(["/", "//", "?", "%", "%25", "%2e", ".."].iter())
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
