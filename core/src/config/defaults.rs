//! The defaults of optional fields (docs/configuration.md lists each).

use crate::claim_path::RawClaimPath;

pub fn max_token_bytes() -> usize {
    8192
}
pub fn realm() -> String {
    "edge-auth".into()
}
pub fn cache_entries() -> usize {
    4096
}
pub fn shared_token_slots() -> usize {
    8192
}
pub fn leeway_s() -> u64 {
    60
}
pub fn yes() -> bool {
    true
}
pub fn timeout_ms() -> u64 {
    5000
}
pub fn refresh_interval_s() -> u64 {
    300
}
pub fn min_refetch_interval_s() -> u64 {
    30
}
pub fn max_jwks_bytes() -> usize {
    64 * 1024
}
pub fn cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}
pub fn cors_headers() -> Vec<String> {
    ["authorization", "content-type"].map(String::from).to_vec()
}
pub fn cors_max_age_s() -> u32 {
    600
}
pub fn context_prefix() -> String {
    crate::context::DEFAULT_PREFIX.into()
}
pub fn tenant_claim() -> RawClaimPath {
    RawClaimPath::Dotted("tenant".into())
}
pub fn service_timeout_ms() -> u64 {
    1000
}
pub fn revocations_path() -> String {
    "/internal/v1/revocations".into()
}
pub fn revocation_poll_s() -> u64 {
    5
}
pub fn revocation_max_staleness_s() -> u64 {
    60
}
pub fn max_feed_bytes() -> usize {
    1024 * 1024
}
pub fn max_revocation_entries() -> usize {
    100_000
}
pub fn scope_claims() -> Vec<RawClaimPath> {
    vec![RawClaimPath::Dotted("scope".into()), RawClaimPath::Dotted("scp".into())]
}
pub fn key_prefix() -> String {
    "sk_".into()
}
pub fn key_hex_digits() -> usize {
    64
}
pub fn lookup_path() -> String {
    "/internal/v1/api-keys/lookup".into()
}
pub fn max_cache_ttl_s() -> u64 {
    300
}
pub fn negative_cache_ttl_s() -> u64 {
    30
}
pub fn shared_cache_slots() -> usize {
    8192
}
pub fn local_cache_entries() -> usize {
    1024
}
pub fn max_lookup_bytes() -> usize {
    64 * 1024
}
pub fn max_pending_lookups() -> usize {
    1024
}
pub fn breaker_failures() -> u32 {
    5
}
pub fn breaker_open_s() -> u64 {
    10
}
pub fn budget_burst() -> u32 {
    30
}
pub fn budget_per_minute() -> u32 {
    60
}
pub fn budget_slots() -> usize {
    4096
}
pub fn budget_ipv6_prefix() -> u8 {
    64
}
