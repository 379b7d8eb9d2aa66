//! What a decision reads from the request: the [`Request`] trait, the
//! credential places (read once, [`census`]) and the client address.

use crate::cache::{token_key, CacheKey};
use crate::config::Config;
use crate::credentials::{self, Census};
use crate::policy::destination::{request_host, AuthorityError, Destination, Needs};
use crate::policy::ip;
use crate::token_source::{self, QueryToken, TokenSource};

use super::Deny;

/// What a decision may read from the request, on demand.
pub trait Request {
    /// The first value of a request header (lower-case name).
    fn header(&mut self, name: &str) -> Option<String>;
    /// Every value of a request header (lower-case name), in order: the
    /// host's separate entries for repeated header lines.
    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.header(name).into_iter().collect()
    }
    /// Calls `f(i, value)` for every value of every header `names[i]`
    /// (lower-case), in the request's order: one pass over the request.
    fn each_header(&mut self, names: &[String], f: &mut dyn FnMut(usize, String)) {
        for (i, name) in names.iter().enumerate() {
            for v in self.header_all(name) {
                f(i, v);
            }
        }
    }
    /// Every `x-forwarded-for` value, joined with `,` in order.
    fn forwarded_for(&mut self) -> Option<String>;
    /// The downstream peer address, as `ip:port` or `[ip6]:port`.
    fn peer(&mut self) -> Option<String>;
    /// A value of the store the workers share (proxy-wasm shared data).
    fn shared_data(&mut self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    /// Writes a value of that store (last writer wins; a failed write is
    /// only a lost entry, never an error of the request).
    fn share(&mut self, _name: &str, _value: &[u8]) {}
    /// Whether the request carries a body (its headers did not end the
    /// stream). Read only for a CORS preflight to be passed upstream.
    fn has_body(&mut self) -> bool {
        false
    }
    /// The name of the route the host selected for the request (Envoy's
    /// `xds.route_name`). Read only when a rule matches route names.
    fn route_name(&mut self) -> Option<String> {
        None
    }
    /// A string value of the selected route's metadata,
    /// `filter_metadata[filter][key]`. Read only when a rule matches it.
    fn route_metadata(&mut self, _filter: &str, _key: &str) -> Option<String> {
        None
    }
}

/// The destination facts the rules need ([`Needs`]), and nothing else:
/// with no host or route condition configured, nothing is read. A host that
/// is missing, duplicated or cannot be read one way is an error.
pub(crate) fn destination(needs: &Needs, req: &mut dyn Request) -> Result<Destination, AuthorityError> {
    let mut d = Destination::default();
    if !needs.any() {
        return Ok(d);
    }
    if needs.host {
        let (mut authorities, mut hosts) = (Vec::new(), Vec::new());
        let names = [":authority".to_owned(), "host".to_owned()];
        req.each_header(&names, &mut |i, v| {
            if i == 0 {
                authorities.push(v)
            } else {
                hosts.push(v)
            }
        });
        d.host = Some(request_host(&authorities, &hosts)?);
    }
    if needs.route_name {
        d.route_name = req.route_name();
    }
    d.metadata = needs
        .metadata
        .iter()
        .map(|k| req.route_metadata(&k.filter, &k.key))
        .collect();
    Ok(d)
}

/// A short, non-reversible fingerprint of a credential for logs: the first
/// 8 hex digits of its SHA-256.
pub fn fingerprint(key: &CacheKey) -> String {
    key.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The credential of a refused request, for its log line. It only ever
/// shows as its [`fingerprint`]; the digest is computed when a log asks for
/// it, so a refusal nobody logs costs no hashing.
pub struct Credential(String);

impl Credential {
    pub(super) fn text(token: String) -> Credential {
        Credential(token)
    }

    /// The SHA-256 of the credential.
    pub fn digest(&self) -> CacheKey {
        token_key(&self.0)
    }

    /// See [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.digest())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.fingerprint())
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Credential) -> bool {
        self.digest() == other.digest()
    }
}

/// A credential found in the request.
pub(super) struct Found<'c> {
    pub(super) token: String,
    pub(super) source: &'c TokenSource,
}

/// Every credential place of the configuration in the request, at most one
/// credential among them ([`credentials::census`]).
pub(super) fn census(cfg: &Config, raw_path: &str, req: &mut dyn Request) -> Result<Census, credentials::Ambiguous> {
    credentials::census(&cfg.credential_places, raw_path, &mut |names, f| {
        req.each_header(names, f)
    })
}

/// Looks for a credential in `sources`, in order (for a JWT: providers in
/// the rule's order, each provider's sources in its order); the first one
/// present wins. The request's places were read by [`census`].
pub(super) fn find_credential<'c>(
    sources: impl Iterator<Item = &'c TokenSource> + Clone,
    census: &Census,
    cfg: &Config,
    raw_path: &str,
) -> Result<Option<Found<'c>>, Deny<'c>> {
    for (i, source) in sources.clone().enumerate() {
        // a source two providers share is read once (no allocation: the list is short)
        if sources.clone().take(i).any(|earlier| earlier == source) {
            continue;
        }
        let token = match source {
            TokenSource::Header { name, scheme } => census
                .header(&cfg.credential_places, name)
                .and_then(|v| token_source::from_header_value(v, scheme.as_deref()))
                .map(str::to_owned),
            TokenSource::Cookie { name } => census
                .cookie_header()
                .and_then(|c| token_source::from_cookie_header(c, name))
                .map(str::to_owned),
            TokenSource::Query { name } => match token_source::from_query(raw_path, name) {
                QueryToken::Absent => None,
                QueryToken::Found { token, .. } => Some(token.into_owned()),
                // the census refused these already
                QueryToken::Duplicate | QueryToken::Malformed => return Err(Deny::AmbiguousCredential),
            },
        };
        if let Some(token) = token {
            return Ok(Some(Found { token, source }));
        }
    }
    Ok(None)
}

/// The client address check; an address that cannot be established fails.
/// `Err` carries the operator's notice when the HCM's settings are the cause.
pub(super) fn client_permitted(policy: &ip::IpPolicy, req: &mut dyn Request) -> Result<(), Option<&'static str>> {
    match client_address(req, policy.trusted_hops, policy.envoy_appends) {
        Ok(addr) if policy.permits(addr) => Ok(()),
        Ok(_) => Err(None),
        Err(e) => Err(e.operator_hint()),
    }
}

/// The client address by the configured X-Forwarded-For rules, if it can be established.
pub(super) fn client_address(
    req: &mut dyn Request,
    trusted_hops: u8,
    envoy_appends: bool,
) -> Result<std::net::IpAddr, ip::ClientAddrError> {
    let peer = req.peer();
    let xff = if trusted_hops == 0 { None } else { req.forwarded_for() };
    ip::client_address(peer.as_deref(), xff.as_deref(), trusted_hops, envoy_appends)
}
