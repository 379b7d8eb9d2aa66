//! What the outbound calls need from the proxy: the host trait the shell
//! implements over proxy-wasm (and the tests over a fake), and the typed
//! values that cross it.

use crate::api_key::breaker::BreakerState;
use crate::api_key::LookupFailure;
use crate::logging::Level;

/// A failed host call, as proxy-wasm reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    Empty,
    /// A shared-data write whose compare-and-swap version is no longer current.
    CasMismatch,
    InternalFailure,
}

/// An HTTP call to make through one of the proxy's clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpCall<'a> {
    pub cluster: &'a str,
    pub authority: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// Headers besides `:method`, `:path` and `:authority`, in order.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub timeout_ms: u64,
}

/// The answer to an HTTP call, read within the size the core asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    /// `None`: no status could be read.
    pub status: Option<u16>,
    pub content_type: Option<String>,
    /// At most the asked maximum plus one byte, so that an oversized body is
    /// detectable without copying all of it.
    pub body: Option<Vec<u8>>,
    /// The `retry-after` header (read for egress token answers).
    pub retry_after: Option<String>,
}

/// The counters the outbound calls move (`edge_auth.` metrics in Envoy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A JWKS fetch sent (by the worker holding the JWKS's lease, or asked
    /// for by a request).
    JwksFetchSent,
    JwksFetchOk,
    JwksFetchFailed,
    /// A revocation poll sent (by the worker holding the feed's lease).
    RevocationPollSent,
    RevocationPollOk,
    RevocationPollFailed,
    /// A lookup sent to the auth service.
    KeyLookups,
    /// A request that waits for a lookup another request (or worker) started.
    KeyCoalesced,
    BreakerOpened,
    LookupFailed(LookupFailure),
    /// A lookup not made: its client spent its `api_keys.lookup_budget`.
    LookupBudgetExceeded,
    /// An OpenID Connect discovery document read and accepted.
    DiscoveryOk,
    /// A discovery document refused (no answer, bad status, too large,
    /// malformed, issuer mismatch, a `jwks_uri` not on the configured authority).
    DiscoveryFailed,
    /// An egress token request sent (by the worker holding the entry's lease).
    EgressTokenFetchSent,
    /// An egress token obtained.
    EgressTokenFetchOk,
    /// An egress token fetch failed (timeout, 429, 5xx, malformed answer, dispatch error).
    EgressTokenFetchFailed,
    /// The issuer rejected the client credentials.
    EgressTokenRejected,
    /// Egress token failures opened (or re-opened) the entry's breaker.
    EgressBreakerOpened,
}

/// The proxy, as the outbound calls use it. Every method is one host call
/// (or none, in a fake); none may panic.
pub trait Host {
    /// The host's clock, in unix milliseconds.
    fn now_ms(&mut self) -> u64;
    /// Starts an HTTP call; its answer comes back with the returned token.
    fn dispatch(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError>;
    /// The answer being delivered (`body_size` bytes of body), its body read
    /// up to `max_body + 1` bytes.
    fn call_response(&mut self, body_size: usize, max_body: usize) -> CallResponse;
    /// A value of the data every worker of the proxy shares, and its
    /// compare-and-swap version (`(None, None)`: never written).
    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data; with `cas`, only if the value is still at that
    /// version ([`HostError::CasMismatch`] otherwise).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// How often the core's tick runs.
    fn set_tick_period_ms(&mut self, period_ms: u64) -> Result<(), HostError>;
    fn count(&mut self, counter: Counter);
    /// The API-key lookup breaker's state, for its gauge.
    fn breaker_state(&mut self, state: BreakerState);
    /// How old the revocation state this worker serves is (milliseconds since the last
    /// good poll by any worker), reported every tick for its gauge.
    fn revocation_state_age(&mut self, _age_ms: u64) {}
    /// Seconds of life left of the egress token this worker serves (the
    /// smallest over entries; 0 when one has none), reported every tick.
    fn egress_token_ttl(&mut self, _ttl_s: u64) {}
    /// A uniformly random value (the egress backoff's jitter).
    fn random_u64(&mut self) -> u64;
    fn log(&mut self, level: Level, message: &str);
}
