//! edge-auth-core: every decision edge-auth makes, in plain Rust.
//!
//! Nothing in this crate calls proxy-wasm. The filter shell (the `edge-auth`
//! crate at the repository root) gathers request facts, calls into this crate
//! and applies the verdict; the calls the filter makes on its own (API-key
//! lookups, revocation polls, JWKS fetches) are decided in [`outbound`],
//! which reaches the proxy through its `Host` trait. Each concern lives in
//! the module named after it.

/// Names a fieldless enum's variants from one table: `name()` and `NAMES`
/// (every name, in the table's order) cannot disagree.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal,)* }) => {
        impl $ty {
            /// Every name [`Self::name`] returns.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// A fixed name for metrics and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }
        }
    };
}

pub mod api_key;
pub mod b64;
pub mod cache;
pub mod claim_path;
pub mod config;
pub mod context;
pub mod credentials;
pub mod decision;
pub mod egress;
pub mod header_map;
pub mod json_object;
pub mod jwt;
pub mod logging;
pub mod outbound;
pub mod policy;
pub mod response;
pub mod token_source;
mod verify;

// The auth service (auth-service/) imports these under their old top-level names.
pub use policy::{ip, origin, scopes};
