//! Host calls for the shell. The proxy-wasm trait methods unwrap the host's
//! status; these return it, or log and carry on where nothing better can be
//! done. Header values are read as bytes: the SDK's string readers unwrap
//! `String::from_utf8`, and HTTP allows any byte above 0x7f in a value, so a
//! client could otherwise crash the VM with one request. A value that is not
//! UTF-8 is converted lossily; every parser in the core refuses the
//! replacement character, so such a value is refused, never trusted. (Header
//! names are tokens, which Envoy's codecs enforce. The SDK still panics on
//! host statuses it does not expect; Envoy returns only expected ones for
//! these calls in the phases the shell makes them.)

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes, LogLevel, MapType, Status};

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::logging::Level;
use edge_auth_core::outbound::{self, CallResponse, Counter, HostError, HttpCall};

use crate::metrics::Metrics;

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Whether messages at `level` reach the log (so formatting can be skipped).
pub fn enabled(level: LogLevel) -> bool {
    hostcalls::get_log_level().map_or(true, |l| (level as u32) >= (l as u32))
}

/// The host's clock in unix milliseconds. If the host cannot say, the end
/// of time: every token is then expired and nothing is served from cache
/// (failing closed).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(u64::MAX, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Bytes as text; invalid UTF-8 becomes U+FFFD, which no parser accepts.
fn text(bytes: Bytes) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Bytes as text, without taking ownership (see [`text`]).
pub fn text_of(bytes: &[u8]) -> String {
    // The strict check first: it reads ASCII a word at a time, where the
    // lossy decoder walks every byte.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

// The raw host call behind the SDK's `get_map_bytes`, which copies every name
// and value into its own allocation (and unwraps names as UTF-8). The status
// and map type are plain integers here, so no value the host returns can be
// an invalid enum.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
}

/// The request's whole header map, serialised as the host gives it (see
/// `edge_auth_core::header_map`): one host call, however many headers are
/// read from it. Empty when the host cannot give it.
pub fn request_header_map() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two locals. The
    // buffer it points to was allocated in this VM through the SDK's
    // `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size` bytes), so
    // the returned Vec owns it and frees it with the same allocator, as the
    // SDK's own readers do.
    unsafe {
        let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        if status != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

/// The downstream peer address (`source.address`: "ip:port").
pub fn peer_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .map(text)
}

// The raw host call behind the SDK's `get_property`, which panics on a
// status it does not expect: a route lookup walks a path into the route's
// metadata, where the host may answer anything but `Ok` for a path that is
// not there.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// A property of the request's stream; `None` for any status but `Ok`.
fn property(path: &[&str]) -> Option<Bytes> {
    // the ABI's property path: the parts, each followed by a NUL
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for part in path {
        serialized.extend_from_slice(part.as_bytes());
        serialized.push(0);
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `request_header_map`: the host writes a pointer to a
    // buffer of `size` bytes it allocated in this VM, which the Vec then owns.
    unsafe {
        let status = proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size);
        if status != 0 || data.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// The name of the route Envoy selected for the request (`xds.route_name`).
pub fn route_name() -> Option<String> {
    property(&["xds", "route_name"]).map(text)
}

/// A value of the selected route's metadata, `filter_metadata[filter][key]`
/// (`xds.route_metadata`, walked by the host: a string value comes back as
/// its bytes; any other kind never equals a configured string).
pub fn route_metadata(filter: &str, key: &str) -> Option<String> {
    property(&["xds", "route_metadata", "filter_metadata", filter, key]).map(text)
}

pub fn set_response_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value))
}

pub fn add_response_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value)
}

pub fn set_request_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
}

/// Adds a request header value (the filter has removed any client copy).
pub fn add_request_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
}

pub fn send_reply(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    hostcalls::send_http_response(status, headers.to_vec(), Some(body))
}

pub fn resume_request() -> Result<(), Status> {
    hostcalls::resume_http_request()
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    hostcalls::set_effective_context(context_id)
}

pub fn plugin_configuration() -> Option<Bytes> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// Starts an HTTP call; the answer arrives in `on_http_call_response` of
/// the calling context, with the returned token.
fn dispatch(call: &HttpCall<'_>) -> Result<u32, Status> {
    let mut headers = Vec::with_capacity(3 + call.headers.len());
    headers.extend_from_slice(&[
        (":method", call.method),
        (":path", call.path),
        (":authority", call.authority),
    ]);
    headers.extend_from_slice(call.headers);
    hostcalls::dispatch_http_call(
        call.cluster,
        headers,
        call.body,
        vec![],
        Duration::from_millis(call.timeout_ms),
    )
}

/// A value of the data the VM's workers share, and its compare-and-swap
/// version (`None`: the key was never written).
pub fn shared_get(name: &str) -> (Option<Bytes>, Option<u32>) {
    hostcalls::get_shared_data(name).unwrap_or((None, None))
}

/// Writes a value of the data the VM's workers share; with `cas`, only if
/// it is still at that version.
pub fn shared_set(name: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(name, Some(value), cas)
}

/// The status, content type and body of the HTTP call response being
/// delivered, the body read only up to `max_body + 1` bytes so an oversized
/// answer is detectable without copying all of it.
fn call_response(body_size: usize, max_body: usize) -> CallResponse {
    let header = |name| {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    };
    let status = header(":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    let body = hostcalls::get_buffer(
        BufferType::HttpCallResponseBody,
        0,
        body_size.min(max_body.saturating_add(1)),
    )
    .ok()
    .flatten();
    CallResponse {
        status,
        content_type: header("content-type").map(text),
        body,
        retry_after: header("retry-after").map(text),
    }
}

/// The host's log level for the core's.
pub fn level(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

fn host_error(status: Status) -> HostError {
    match status {
        Status::NotFound => HostError::NotFound,
        Status::BadArgument => HostError::BadArgument,
        Status::SerializationFailure => HostError::SerializationFailure,
        Status::ParseFailure => HostError::ParseFailure,
        Status::Empty => HostError::Empty,
        Status::CasMismatch => HostError::CasMismatch,
        _ => HostError::InternalFailure,
    }
}

/// The proxy as the core's outbound calls see it: host calls, and the
/// worker's metrics for what they count.
pub struct ProxyHost<'a> {
    pub metrics: &'a Metrics,
}

impl outbound::Host for ProxyHost<'_> {
    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn dispatch(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError> {
        dispatch(call).map_err(host_error)
    }

    fn call_response(&mut self, body_size: usize, max_body: usize) -> CallResponse {
        call_response(body_size, max_body)
    }

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        shared_set(key, value, cas).map_err(host_error)
    }

    fn set_tick_period_ms(&mut self, period_ms: u64) -> Result<(), HostError> {
        hostcalls::set_tick_period(Duration::from_millis(period_ms)).map_err(host_error)
    }

    fn count(&mut self, counter: Counter) {
        self.metrics.count(counter);
    }

    fn breaker_state(&mut self, state: BreakerState) {
        self.metrics.breaker_state(state);
    }

    fn revocation_state_age(&mut self, age_ms: u64) {
        self.metrics.revocation_state_age(age_ms);
    }

    fn egress_token_ttl(&mut self, ttl_s: u64) {
        self.metrics.egress_token_ttl(ttl_s);
    }

    fn random_u64(&mut self) -> u64 {
        random_u64()
    }

    fn log(&mut self, level: Level, message: &str) {
        log(self::level(level), &format!("edge-auth: {message}"));
    }
}

/// A random value: std's hash keys, which on wasm32-wasip1 come from the
/// host's `random_get` (a fresh `RandomState` moves its keys on each call).
/// Only the egress backoff's jitter uses it.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}
