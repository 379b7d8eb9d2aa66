//! JSON as an attacker writes it: duplicate keys, numbers no type holds,
//! deep nesting, hostile strings. [`J`] is written out as text, so it can
//! say what `serde_json::Value` cannot.

use super::engine::Rng;

/// A JSON text under construction.
#[derive(Clone, Debug)]
pub enum J {
    /// Written as is: a number, `true`, `null`, or a broken fragment.
    Raw(String),
    Str(String),
    Arr(Vec<J>),
    /// Pairs in order; a key may repeat.
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub fn n(v: impl ToString) -> J {
        J::Raw(v.to_string())
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Raw(r) => out.push_str(r),
            J::Str(s) => write_str(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub const HOSTILE_STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "A",
    "null",
    "\u{0}",
    "\u{1f}",
    "\u{7f}",
    "\t",
    "\r\nx-injected: 1",
    "\u{fffd}",
    "\u{feff}",
    "\u{202e}",
    "\u{2028}",
    "é",
    "😀",
    "%00",
    "%2e%2e",
    "../",
    "\\",
    "\"",
    ",",
    ";",
    "*",
    "AAAA",
    "=",
    "sk_",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

pub const HOSTILE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "1.0",
    "1e2",
    "255",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    "1e400",
    "-1e400",
    "1800000000",
    "1799999999",
    "1800000001",
];

/// A string from the hostile palette, sometimes repeated many times.
pub fn hostile_string(rng: &mut Rng) -> String {
    let s = rng.pick(HOSTILE_STRINGS).to_string();
    match rng.below(40) {
        0 => s.repeat(1 + rng.below(3000)),
        1..=4 => s.repeat(1 + rng.below(8)),
        5..=8 => format!("{}{}", s, rng.pick(HOSTILE_STRINGS)),
        _ => s,
    }
}

/// Any JSON value, mostly small.
pub fn any_value(rng: &mut Rng, depth: usize) -> J {
    match rng.below(if depth > 3 { 4 } else { 7 }) {
        0 => J::Raw(rng.pick(HOSTILE_NUMBERS).to_string()),
        1 => J::Raw(rng.pick(&["true", "false", "null"]).to_string()),
        2 | 3 => J::Str(hostile_string(rng)),
        4 => J::Arr((0..rng.count(2, 40)).map(|_| any_value(rng, depth + 1)).collect()),
        5 => J::Obj(
            (0..rng.count(2, 20))
                .map(|_| (hostile_string(rng), any_value(rng, depth + 1)))
                .collect(),
        ),
        _ => {
            // deep nesting
            let n = rng.count(8, 3000);
            J::Raw(format!("{}{}", "[".repeat(n), "]".repeat(n)))
        }
    }
}

/// An object of `fields`, each present with its good value most of the
/// time, sometimes missing, of a hostile value, repeated, or joined by an
/// unknown field.
pub fn object(rng: &mut Rng, fields: Vec<(&str, J)>) -> J {
    let mut pairs = Vec::new();
    for (name, good) in fields {
        match rng.below(20) {
            0 => {}
            1 | 2 => pairs.push((name.to_owned(), any_value(rng, 1))),
            3 => {
                pairs.push((name.to_owned(), good.clone()));
                pairs.push((name.to_owned(), any_value(rng, 1)));
            }
            _ => pairs.push((name.to_owned(), good)),
        }
    }
    if rng.one_in(10) {
        pairs.push((hostile_string(rng), any_value(rng, 1)));
    }
    if rng.one_in(10) && pairs.len() > 1 {
        let a = rng.below(pairs.len());
        let b = rng.below(pairs.len());
        pairs.swap(a, b);
    }
    J::Obj(pairs)
}

/// Words that mutate JSON texts usefully.
pub fn dictionary() -> Vec<Vec<u8>> {
    let mut d: Vec<Vec<u8>> = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\\u0000",
        "\\ud800",
        "null",
        "true",
        "false",
        "{}",
        "[]",
        "\"\"",
        "-",
        "1e400",
        "18446744073709551616",
        "-1",
        "0.5",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    d.extend(HOSTILE_STRINGS.iter().map(|s| s.as_bytes().to_vec()));
    d
}

/// Standard base64url without padding.
pub fn b64u(bytes: &[u8]) -> String {
    edge_auth_core::b64::encode_url(bytes)
}
