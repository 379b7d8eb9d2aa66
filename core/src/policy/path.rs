//! Request path normalisation for route matching.
//!
//! [`normalize`] turns the `:path` pseudo-header into the one form routes are
//! matched against: unreserved escapes decoded, repeated slashes merged, dot
//! segments resolved (RFC 3986 section 5.2.4). Anything that different servers
//! could read differently (encoded separators, NUL, bad escapes, backslashes,
//! control or non-ASCII bytes, parameters on dot segments) is refused rather
//! than guessed at.
//!
//! That includes what a *second* decoder would read differently: the path is
//! forwarded as sent, and a backend, framework or proxy behind Envoy may
//! percent-decode it again. An escaped `%` (`%25`) is the only way a path can
//! change under a second decoding, so every `%25` is refused: what is left,
//! decoded once, holds no `%`, and decoding it again changes nothing. Escapes
//! of control characters, and escapes that do not form UTF-8 (overlong forms
//! such as `%C0%AE`, which lenient decoders read as `.`), are refused for the
//! same reason: decoders disagree on them.

use std::borrow::Cow;

/// The longest path part (before `?`) accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 8192;

/// A normalised request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    /// The normalised path, borrowed from the input whenever possible.
    pub path: Cow<'a, str>,
    /// The raw query after the first `?`, unchanged (`Some("")` for a bare `?`).
    pub query: Option<&'a str>,
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    Empty,
    /// The path does not start with `/` (asterisk, absolute or authority form).
    NotOrigin,
    /// The path part is longer than [`MAX_PATH_BYTES`].
    TooLong,
    /// `%2F` or `%5C`: a separator hidden in an escape.
    EncodedSeparator,
    /// A `%` not followed by two hex digits, or escapes of bytes above 0x7F
    /// that do not form UTF-8 (`%C0%AE`, `%FF`, a truncated sequence).
    BadEscape,
    /// `%25`: an escaped `%`, which a second decoder would decode again
    /// (`%252e` is `%2e` once, `.` twice).
    EncodedPercent,
    /// A byte not allowed in a path: control, space, `#`, `\`, non-ASCII, or
    /// an escape of a control character (`%00` to `%1F`, `%7F`).
    ForbiddenChar,
    /// A segment that is empty, `.` or `..` before a `;` parameter (`/..;/`),
    /// which some servers resolve as a dot segment.
    AmbiguousSegment,
}

impl PathError {
    /// A short human description.
    pub fn as_str(&self) -> &'static str {
        match self {
            PathError::Empty => "empty path",
            PathError::NotOrigin => "path does not start with /",
            PathError::TooLong => "path too long",
            PathError::EncodedSeparator => "encoded / or \\ in path",
            PathError::BadEscape => "invalid percent escape in path",
            PathError::EncodedPercent => "encoded % in path (a second decoding would change it)",
            PathError::ForbiddenChar => "forbidden character in path",
            PathError::AmbiguousSegment => "ambiguous path segment (a ; parameter, a trailing dot, or .. after //)",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for PathError {}

/// Normalises `raw`, the `:path` pseudo-header (path and optional `?query`).
///
/// The result is borrowed from `raw` unless decoding or slash merging changed
/// the text. The query is returned as sent and never examined.
pub fn normalize(raw: &str) -> Result<Normalized<'_>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let bytes = raw.as_bytes();
    // Find the end of the path part without reading past the limit.
    let window = bytes.get(..=MAX_PATH_BYTES).unwrap_or(bytes);
    let (path, query) = match window.iter().position(|&b| b == b'?') {
        Some(q) => (raw.get(..q).unwrap_or_default(), raw.get(q + 1..)),
        None if bytes.len() > MAX_PATH_BYTES => return Err(PathError::TooLong),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotOrigin);
    }

    let b = path.as_bytes();
    let mut out = Out::Prefix(path, 0);
    // `i` is always the index of a '/'.
    let mut i = 0;
    loop {
        let mut start = i + 1;
        while b.get(start) == Some(&b'/') {
            start += 1;
        }
        let merged = start > i + 1;
        let end = scan_segment(b, start)?;
        let seg = b.get(start..end).unwrap_or_default();
        let last = end >= b.len();
        match classify(seg) {
            // `a//..` is `a/` to an RFC 3986 resolver but `/` after merging
            // slashes: the two readings differ, so neither is guessed.
            Segment::DotDot if merged => return Err(PathError::AmbiguousSegment),
            // `admin.` is `admin` to servers that strip trailing dots (IIS).
            Segment::Normal if ends_with_dot(seg) => return Err(PathError::AmbiguousSegment),
            Segment::Empty | Segment::Dot => {
                if last {
                    out.push(b'/');
                }
            }
            Segment::DotDot => {
                out.pop_segment();
                if last {
                    out.push(b'/');
                }
            }
            Segment::Ambiguous => return Err(PathError::AmbiguousSegment),
            Segment::Normal => {
                out.push(b'/');
                push_decoded(&mut out, seg);
            }
        }
        if last {
            break;
        }
        i = end;
    }
    Ok(Normalized {
        path: out.finish(),
        query,
    })
}

/// Validates the segment starting at `start`; returns the index of the next
/// '/' or the end.
fn scan_segment(b: &[u8], start: usize) -> Result<usize, PathError> {
    let mut k = start;
    while let Some(&c) = b.get(k) {
        match c {
            b'/' => break,
            b'%' => {
                let v = escape_at(b, k).ok_or(PathError::BadEscape)?;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    // `%25xx` is `%xx` to a second decoder: `%252e%252e` would be `..`
                    b'%' => return Err(PathError::EncodedPercent),
                    0..=0x1f | 0x7f => return Err(PathError::ForbiddenChar),
                    0x80.. => k = utf8_escapes(b, k, v)?,
                    _ => k += 3,
                }
            }
            // Matrix parameters (`/admin;x/`) are stripped before routing by
            // servlet containers, so `/admin;x/` would escape a `/admin/` rule.
            b';' => return Err(PathError::AmbiguousSegment),
            c if forbidden(c) => return Err(PathError::ForbiddenChar),
            _ => k += 1,
        }
    }
    Ok(k)
}

/// Checks that the escape at `b[k]`, of the byte `lead` (0x80 or above),
/// starts escapes that together form one UTF-8 character; returns the index
/// after them. Overlong forms (`%C0%AE` for `.`), surrogates, code points
/// past U+10FFFF, stray continuation bytes and truncated sequences are
/// refused: lenient decoders read some of them as ASCII (`.`, `/`).
fn utf8_escapes(b: &[u8], k: usize, lead: u8) -> Result<usize, PathError> {
    let width = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Err(PathError::BadEscape),
    };
    let mut buf = [lead, 0, 0, 0];
    for (i, slot) in buf.iter_mut().enumerate().take(width).skip(1) {
        let at = k + 3 * i;
        if b.get(at) != Some(&b'%') {
            return Err(PathError::BadEscape);
        }
        *slot = escape_at(b, at).ok_or(PathError::BadEscape)?;
    }
    match std::str::from_utf8(buf.get(..width).unwrap_or_default()) {
        Ok(_) => Ok(k + 3 * width),
        Err(_) => Err(PathError::BadEscape),
    }
}

fn forbidden(c: u8) -> bool {
    c <= b' ' || c >= 0x7f || c == b'\\' || c == b'#'
}

/// The byte encoded by the escape at `b[k] == '%'`, if valid.
pub(crate) fn escape_at(b: &[u8], k: usize) -> Option<u8> {
    let hi = hex(*b.get(k + 1)?)?;
    let lo = hex(*b.get(k + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

enum Segment {
    Empty,
    Dot,
    DotDot,
    Normal,
    Ambiguous,
}

/// Classifies an already validated segment, reading `%2e` as `.`.
fn classify(seg: &[u8]) -> Segment {
    if seg.is_empty() {
        return Segment::Empty;
    }
    let mut dots = 0;
    let mut k = 0;
    loop {
        match seg.get(k) {
            None => {
                return match dots {
                    1 => Segment::Dot,
                    2 => Segment::DotDot,
                    _ => Segment::Normal,
                }
            }
            Some(b'.') => k += 1,
            Some(b'%') if seg.get(k + 1) == Some(&b'2') && matches!(seg.get(k + 2), Some(b'e' | b'E')) => k += 3,
            Some(b';') if dots <= 2 => return Segment::Ambiguous,
            Some(_) => return Segment::Normal,
        }
        dots += 1;
        if dots > 2 {
            return Segment::Normal;
        }
    }
}

/// Whether a segment ends in `.` or `%2e`.
fn ends_with_dot(seg: &[u8]) -> bool {
    seg.last() == Some(&b'.')
        || (seg.len() >= 3 && seg.get(seg.len() - 3..).is_some_and(|t| t.eq_ignore_ascii_case(b"%2e")))
}

/// Appends a validated segment, decoding escapes of unreserved characters.
fn push_decoded(out: &mut Out<'_>, seg: &[u8]) {
    let mut k = 0;
    while let Some(&c) = seg.get(k) {
        if c == b'%' {
            if let Some(v) = escape_at(seg, k).filter(|&v| unreserved(v)) {
                out.push(v);
                k += 3;
                continue;
            }
        }
        out.push(c);
        k += 1;
    }
}

/// Output that stays a borrowed prefix of the input for as long as it matches it.
enum Out<'a> {
    /// The output so far is `src[..len]`.
    Prefix(&'a str, usize),
    Owned(String),
}

impl<'a> Out<'a> {
    /// Appends one ASCII byte.
    fn push(&mut self, c: u8) {
        match self {
            Out::Prefix(src, len) => {
                if src.as_bytes().get(*len) == Some(&c) {
                    *len += 1;
                } else {
                    let mut s = String::with_capacity(src.len());
                    s.push_str(src.get(..*len).unwrap_or_default());
                    s.push(char::from(c));
                    *self = Out::Owned(s);
                }
            }
            Out::Owned(s) => s.push(char::from(c)),
        }
    }

    /// Removes the last `/segment`, if any.
    fn pop_segment(&mut self) {
        match self {
            Out::Prefix(src, len) => {
                *len = src.get(..*len).and_then(|p| p.rfind('/')).unwrap_or(0);
            }
            Out::Owned(s) => {
                let cut = s.rfind('/').unwrap_or(0);
                s.truncate(cut);
            }
        }
    }

    fn finish(self) -> Cow<'a, str> {
        match self {
            Out::Prefix(src, len) => Cow::Borrowed(src.get(..len).unwrap_or_default()),
            Out::Owned(s) => Cow::Owned(s),
        }
    }
}

#[cfg(test)]
mod tests;
