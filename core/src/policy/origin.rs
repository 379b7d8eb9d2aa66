//! Browser `Origin` checks and CORS.
//!
//! [`Origin::parse`] reads an `Origin` header value (RFC 6454 section 7) into
//! one normalised form and refuses anything a browser would not send.
//! [`OriginPattern`]s from configuration match origins exactly or by a
//! subdomain wildcard. [`Cors`] builds the preflight answer and the headers
//! added to actual responses; it never emits `*` as the allowed origin.

use std::fmt;
use std::net::Ipv6Addr;

/// The longest origin or origin pattern accepted, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The offset of the host in a serialisation `scheme://host[:port]`.
    fn host_start(self) -> usize {
        self.as_str().len() + 3
    }
}

/// A normalised origin: scheme and host lower-case, default port removed
/// (http:80, https:443), e.g. `https://app.example.com`, `http://localhost:8080`.
///
/// IPv6 hosts are kept in brackets in their canonical text form
/// (`http://[::1]:8080`); IPv4 hosts must already be dotted quads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `scheme://host[:port]`, normalised.
    text: String,
    scheme: Scheme,
    /// End of the host in `text`.
    host_end: usize,
    /// `None` for the scheme's default port.
    port: Option<u16>,
}

impl Origin {
    /// Parses an `Origin` header value (RFC 6454 serialisation:
    /// scheme `://` host [`:` port], nothing else).
    ///
    /// Refused: `null` (see [`classify`]), a path (even `/`), query, fragment,
    /// userinfo, whitespace, control or non-ASCII bytes, a scheme other than
    /// http or https, an empty host, a host with characters outside
    /// `[a-z0-9.-]` (after lowercasing) unless it is a bracketed IPv6 literal,
    /// a host whose last label is numeric unless it is a dotted-quad IPv4
    /// address (browsers would have normalised `127.1` or `0x7f.0.0.1`), an
    /// empty label (leading, doubled or trailing dot: browsers keep
    /// `example.com.` a different origin from `example.com`, so it is neither
    /// merged with it nor accepted), a port that is empty, 0, above 65535, or
    /// not plain digits without a leading zero, and anything longer than
    /// [`MAX_ORIGIN_BYTES`].
    pub fn parse(value: &str) -> Option<Origin> {
        parse_origin(value).ok()
    }

    /// The normalised serialisation, e.g. `https://app.example.com`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// The lower-case host; an IPv6 literal keeps its brackets (`[::1]`).
    pub fn host(&self) -> &str {
        self.text
            .get(self.scheme.host_start()..self.host_end)
            .unwrap_or_default()
    }

    /// The explicit port, `None` for the scheme's default port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// [`Origin::parse`] with a short reason for refusals.
fn parse_origin(value: &str) -> Result<Origin, &'static str> {
    if value.len() > MAX_ORIGIN_BYTES {
        return Err("origin too long");
    }
    if value.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err("whitespace, control or non-ASCII character in origin");
    }
    let (scheme, rest) = value
        .split_once("://")
        .ok_or("origin is not of the form scheme://host[:port]")?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else {
        return Err("origin scheme is not http or https");
    };
    if rest.contains(['/', '?', '#']) {
        return Err("path, query or fragment in origin");
    }
    if rest.contains('@') {
        return Err("userinfo in origin");
    }
    let (host, port) = split_host_port(rest)?;
    let host = parse_host(host)?;
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    }
    .filter(|&p| p != scheme.default_port());

    let mut text = String::with_capacity(scheme.host_start() + host.len() + 6);
    text.push_str(scheme.as_str());
    text.push_str("://");
    text.push_str(&host);
    let host_end = text.len();
    if let Some(p) = port {
        text.push(':');
        text.push_str(&p.to_string());
    }
    Ok(Origin {
        text,
        scheme,
        host_end,
        port,
    })
}

/// Splits `host[:port]`; a bracketed host may contain colons.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner.find(']').ok_or("unclosed [ in origin host")?;
        let host = rest.get(..close + 2).unwrap_or_default();
        let tail = inner.get(close + 1..).unwrap_or_default();
        if tail.is_empty() {
            return Ok((host, None));
        }
        return match tail.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("unexpected character after ] in origin host"),
        };
    }
    Ok(match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

/// Validates and lowercases a host.
fn parse_host(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("empty origin host");
    }
    if raw.starts_with('[') {
        let inner = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or_default();
        let addr: Ipv6Addr = inner.parse().map_err(|_| "invalid IPv6 address in origin")?;
        return Ok(format!("[{addr}]"));
    }
    let host = raw.to_ascii_lowercase();
    if !host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("invalid character in origin host");
    }
    if host.split('.').any(str::is_empty) {
        return Err("empty label in origin host (leading, trailing or double dot)");
    }
    if ends_in_number(&host) && !is_dotted_quad(&host) {
        return Err("numeric origin host is not a dotted-quad IPv4 address");
    }
    Ok(host)
}

/// Whether the last label reads as a number to a URL parser (WHATWG URL
/// "ends in a number"): decimal digits or `0x` hex.
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `host` is `a.b.c.d` with each part 0-255 in plain decimal.
fn is_dotted_quad(host: &str) -> bool {
    let mut parts = 0;
    for part in host.split('.') {
        parts += 1;
        let canonical = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !canonical || !matches!(part.parse::<u16>(), Ok(n) if n <= 255) {
            return false;
        }
    }
    parts == 4
}

/// Whether a normalised host is an IP literal rather than a domain name.
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || ends_in_number(host)
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid origin port (1-65535 in plain digits)");
    }
    p.parse::<u32>()
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or("origin port out of range")
}

/// What the request's `Origin` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginHeader {
    /// No `Origin` header.
    Missing,
    /// `null`: an opaque origin (sandboxed frame, `file:`, some redirects).
    Null,
    /// Present but not a valid origin (including an empty value).
    Invalid,
    /// A valid origin.
    Present(Origin),
}

/// Classifies the `Origin` header value, if any. `null` is recognised in any
/// case but only exactly, without surrounding whitespace.
pub fn classify(header: Option<&str>) -> OriginHeader {
    match header {
        None => OriginHeader::Missing,
        Some(v) if v.eq_ignore_ascii_case("null") => OriginHeader::Null,
        Some(v) => Origin::parse(v).map_or(OriginHeader::Invalid, OriginHeader::Present),
    }
}

const WILDCARD_PLACEMENT: &str = "a wildcard must be the whole leftmost host label, as in https://*.example.com";

/// An allowed-origin pattern: exact (`https://app.example.com`) or wildcard
/// subdomain (`https://*.example.com`, `https://*.example.com:8443`).
///
/// Scheme and port always match exactly (a missing port means the scheme's
/// default); there is no wildcard scheme or port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// The exact origin, or for a wildcard the origin of its base domain.
    base: Origin,
    wildcard: bool,
    /// The normalised pattern, e.g. `https://*.example.com:8443`.
    text: String,
}

impl OriginPattern {
    /// Parses a configured pattern. Errors are short messages for the
    /// configuration log.
    ///
    /// Refused: `*` and `null`, a wildcard anywhere but as the whole leftmost
    /// label (`https://a*.x.com`, `https://*x.com`, `*://x.com`,
    /// `https://*.*.x.com`), a wildcard over an IP address or over a single
    /// label (`https://*.com`; two-label public suffixes such as `co.uk` cannot
    /// be told apart without a suffix list and are accepted), and anything
    /// [`Origin::parse`] refuses.
    pub fn parse(pattern: &str) -> Result<OriginPattern, String> {
        if pattern.len() > MAX_ORIGIN_BYTES {
            return Err("origin pattern too long".to_owned());
        }
        if pattern == "*" {
            return Err("\"*\" is not allowed: list the allowed origins".to_owned());
        }
        if pattern.eq_ignore_ascii_case("null") {
            return Err("the null origin cannot be allowed".to_owned());
        }
        let Some((scheme, rest)) = pattern.split_once("://") else {
            return Err("origin is not of the form scheme://host[:port]".to_owned());
        };
        if scheme.contains('*') {
            return Err(WILDCARD_PLACEMENT.to_owned());
        }
        let (wildcard, base_rest) = match rest.strip_prefix("*.") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        if base_rest.contains('*') {
            return Err(WILDCARD_PLACEMENT.to_owned());
        }
        let base = parse_origin(&format!("{scheme}://{base_rest}")).map_err(str::to_owned)?;
        if !wildcard {
            let text = base.text.clone();
            return Ok(OriginPattern { base, wildcard, text });
        }
        if is_ip_literal(base.host()) {
            return Err("a wildcard cannot apply to an IP address".to_owned());
        }
        if !base.host().contains('.') {
            return Err("a wildcard needs a base of at least two labels, as in *.example.com".to_owned());
        }
        let after_scheme = base.text.get(base.scheme.host_start()..).unwrap_or_default();
        let text = format!("{}://*.{after_scheme}", base.scheme());
        Ok(OriginPattern { base, wildcard, text })
    }

    /// Whether `origin` is allowed by this pattern. A wildcard matches only a
    /// real subdomain: `https://*.example.com` matches `https://a.example.com`
    /// and `https://a.b.example.com`, never `https://example.com`,
    /// `https://example.com.evil.net`, `https://evil-example.com`,
    /// `http://a.example.com` or another port.
    pub fn matches(&self, origin: &Origin) -> bool {
        if !self.wildcard {
            return self.base == *origin;
        }
        origin.scheme == self.base.scheme
            && origin.port == self.base.port
            && origin
                .host()
                .strip_suffix(self.base.host())
                .and_then(|sub| sub.strip_suffix('.'))
                .is_some_and(|sub| !sub.is_empty())
    }

    /// The normalised pattern, e.g. `https://*.example.com:8443`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a subdomain wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A list of allowed-origin patterns; an origin is allowed if any matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginList {
    patterns: Vec<OriginPattern>,
}

impl OriginList {
    /// Parses every pattern; on error returns the index of the first bad one
    /// and its message.
    pub fn parse(patterns: &[String]) -> Result<OriginList, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| OriginPattern::parse(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OriginList { patterns })
    }

    /// Whether any pattern matches `origin`.
    pub fn matches(&self, origin: &Origin) -> bool {
        self.patterns.iter().any(|p| p.matches(origin))
    }

    /// Whether the list has no patterns (so it allows nothing).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in configuration order.
    pub fn patterns(&self) -> &[OriginPattern] {
        &self.patterns
    }
}

/// Whether a request is a CORS preflight: method `OPTIONS` (exactly, methods
/// are case-sensitive) with an `Origin` and an `Access-Control-Request-Method`
/// header, whatever their values.
pub fn is_preflight(method: &str, origin: Option<&str>, acr_method: Option<&str>) -> bool {
    method == "OPTIONS" && origin.is_some() && acr_method.is_some()
}

/// Whether `s` is an HTTP token (RFC 9110 section 5.6.2): a method or header
/// name, safe in a header value.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A route's CORS settings, compiled from configuration.
///
/// The header builders skip list entries that are not HTTP tokens, so their
/// output is always header-safe; [`Cors::check`] reports such entries at
/// configuration time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Allowed methods, upper-case.
    pub allow_methods: Vec<String>,
    /// Allowed request header names, lower-case.
    pub allow_headers: Vec<String>,
    /// Response header names exposed to scripts, lower-case.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight answer, in seconds.
    pub max_age_s: u32,
    /// Whether to send `access-control-allow-credentials: true`.
    pub allow_credentials: bool,
}

impl Cors {
    /// Headers for the preflight answer (204) to an allowed origin:
    /// `access-control-allow-origin` (the request's origin exactly as sent),
    /// `vary: origin`, `access-control-allow-methods` and
    /// `access-control-allow-headers` (the configured lists, whatever the
    /// request asked for: the browser enforces them; omitted when empty),
    /// `access-control-max-age`, and `access-control-allow-credentials: true`
    /// when set.
    ///
    /// If `origin` is not a valid origin, only `vary: origin` is returned,
    /// which the browser reads as a refusal.
    pub fn preflight_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        if !push_origin(&mut out, origin) {
            return out;
        }
        push_list(&mut out, "access-control-allow-methods", &self.allow_methods);
        push_list(&mut out, "access-control-allow-headers", &self.allow_headers);
        out.push(("access-control-max-age", self.max_age_s.to_string()));
        if self.allow_credentials {
            out.push(("access-control-allow-credentials", "true".to_owned()));
        }
        out
    }

    /// Whether the preflight's requested method is allowed: listed exactly
    /// (case-sensitive). The simple methods GET, HEAD and POST count only if
    /// listed.
    pub fn allows_method(&self, method: &str) -> bool {
        self.allow_methods.iter().any(|m| m == method)
    }

    /// Headers to add to an actual (non-preflight) response for an allowed
    /// origin: `access-control-allow-origin` (the origin exactly as sent),
    /// `vary: origin` (to be appended to any existing `vary`, not replace it),
    /// `access-control-allow-credentials: true` when set, and
    /// `access-control-expose-headers` when non-empty.
    ///
    /// If `origin` is not a valid origin, only `vary: origin` is returned.
    pub fn response_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(4);
        if !push_origin(&mut out, origin) {
            return out;
        }
        if self.allow_credentials {
            out.push(("access-control-allow-credentials", "true".to_owned()));
        }
        push_list(&mut out, "access-control-expose-headers", &self.expose_headers);
        out
    }
}

/// Pushes `access-control-allow-origin` (if `origin` is valid, hence
/// header-safe and never `*`) and `vary: origin`; returns whether the origin
/// was valid.
fn push_origin(out: &mut Vec<(&'static str, String)>, origin: &str) -> bool {
    let valid = Origin::parse(origin).is_some();
    if valid {
        out.push(("access-control-allow-origin", origin.to_owned()));
    }
    out.push(("vary", "origin".to_owned()));
    valid
}

/// Pushes `name: a, b, c` from the token entries of `items`, if any.
fn push_list(out: &mut Vec<(&'static str, String)>, name: &'static str, items: &[String]) {
    let joined = items
        .iter()
        .filter(|s| is_token(s))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if !joined.is_empty() {
        out.push((name, joined));
    }
}

#[cfg(test)]
mod tests;
