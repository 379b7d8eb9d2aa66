//! Fuzzing every parser of untrusted input, on stable Rust (no cargo-fuzz,
//! no nightly): a structure-aware generator and byte-level mutations per
//! target, driven by [`engine`]. `make test` runs a bounded, reproducible
//! run of every target (a fixed seed and number of executions, printed with
//! `--nocapture`); `make fuzz` runs each for `FUZZ_SECONDS` from a random
//! seed. Each target's module states the properties it checks; every
//! failure found becomes a named test in [`regressions`]. Native only.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apikey;
mod config;
mod engine;
mod header_map;
mod json;
mod jwks;
mod jwt;
mod origin;
mod path;
mod regressions;
mod revocation;
mod xff;

/// One test per target: `fuzz_<target module>`.
macro_rules! fuzz_targets {
    ($($test:ident: $target:ident;)*) => {$(
        #[test]
        fn $test() {
            engine::run(&$target::target());
        }
    )*};
}

fuzz_targets! {
    fuzz_header_map: header_map;
    fuzz_jwt_inspect: jwt;
    fuzz_config: config;
    fuzz_path: path;
    fuzz_x_forwarded_for: xff;
    fuzz_origin: origin;
    fuzz_api_key_answer: apikey;
    fuzz_revocation_feed: revocation;
    fuzz_jwks: jwks;
}
