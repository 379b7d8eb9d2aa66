//! Claim paths: how the configuration names a claim, top-level or nested
//! inside JSON objects (docs/configuration.md 3.7, "Claim paths").
//!
//! A path is written either as a string or as an array of segments:
//!
//! - `"sub"`, `"realm_access.roles"`: a string, `.` between segments; `\.`
//!   is a literal dot and `\\` a literal backslash inside a segment
//!   (`"https://example\\.com/claims.tenant"` in JSON). Any other `\`, an
//!   empty segment (`"a..b"`, `".a"`, `"a."`) and an unescaped `.` between a
//!   `://` and the next `/` are refused: `"https://example.com/roles"` could
//!   mean the claim of that name or a path through `https://example`, so the
//!   configuration must say which (escape the dots, or use an array).
//! - `["https://example.com/claims", "tenant"]`: an array, each string one
//!   segment taken literally (dots and backslashes included).
//!
//! Each segment is a key of a JSON object; a path never indexes into arrays.
//! Paths are compiled once, when the configuration is loaded.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Most segments a claim path may have.
pub const MAX_SEGMENTS: usize = 8;
/// Longest claim path, in bytes (all segments together).
pub const MAX_PATH_BYTES: usize = 256;

/// A compiled claim path: one or more non-empty object keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
}

/// A claim path as written in the configuration, before it is compiled.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawClaimPath {
    Dotted(String),
    Segments(Vec<String>),
}

impl ClaimPath {
    /// Compiles a path as written in the configuration; the error says what
    /// is wrong (the caller names the field).
    pub fn compile(raw: &RawClaimPath) -> Result<ClaimPath, String> {
        let segments = match raw {
            RawClaimPath::Dotted(s) => split_dotted(s)?,
            RawClaimPath::Segments(list) => {
                if list.is_empty() {
                    return Err("a claim path needs at least one segment".into());
                }
                list.clone()
            }
        };
        if segments.iter().any(String::is_empty) {
            return Err("a claim path segment must not be empty".into());
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("at most {MAX_SEGMENTS} segments in a claim path"));
        }
        if segments.iter().map(String::len).sum::<usize>() > MAX_PATH_BYTES {
            return Err(format!("a claim path is at most {MAX_PATH_BYTES} bytes"));
        }
        if segments.iter().any(|s| s.chars().any(char::is_control)) {
            return Err("a claim path must not contain control characters".into());
        }
        Ok(ClaimPath { segments })
    }

    /// A one-segment path (the claim of this top-level name).
    pub fn top(name: &str) -> ClaimPath {
        ClaimPath {
            segments: vec![name.to_owned()],
        }
    }

    /// The value at this path in `claims`, if every segment but the last
    /// names an object and the last one is present.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (last, parents) = self.segments.split_last()?;
        let mut map = claims;
        for segment in parents {
            map = map.get(segment)?.as_object()?;
        }
        map.get(last)
    }

    /// The top-level claim this path starts with.
    pub fn first(&self) -> &str {
        self.segments.first().map_or("", String::as_str)
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

/// Splits a dotted path string (see the module doc).
fn split_dotted(s: &str) -> Result<Vec<String>, String> {
    let mut segments = vec![String::new()];
    // between a `://` and the next `/`: a URL's host, where dots are the name's
    let mut in_authority = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('.' | '\\')) => segments.last_mut().into_iter().for_each(|seg| seg.push(e)),
                Some(other) => return Err(format!("unknown escape \"\\{other}\" (only \\. and \\\\)")),
                None => return Err("a claim path ends with a lone \\".into()),
            },
            '.' if in_authority => {
                return Err(format!(
                    "\"{s}\" is ambiguous: the dot after \"://\" may be part of a name or separate segments; \
                     escape the dots that are part of a name (\\.) or give the path as an array of segments"
                ))
            }
            '.' => segments.push(String::new()),
            c => {
                segments.last_mut().into_iter().for_each(|seg| seg.push(c));
                let seg = segments.last().map_or("", String::as_str);
                if seg.ends_with("://") {
                    in_authority = true;
                } else if c == '/' {
                    in_authority = false;
                }
            }
        }
    }
    Ok(segments)
}

impl fmt::Display for ClaimPath {
    /// The path in its string form, dots and backslashes in names escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&segment.replace('\\', "\\\\").replace('.', "\\."))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimPath({self})")
    }
}

#[cfg(test)]
mod tests;
