//! Signature verification: the edge's own verifiers, written for the hot path
//! on wasm32, and the arithmetic they share.
//!
//! - [`rsa`]: RS256/384/512 (RSASSA-PKCS1-v1_5) and PS256/384/512 (RSASSA-PSS).
//! - [`p256`]: ES256 (ECDSA P-256 with SHA-256).
//! - [`montgomery`]: multi-precision arithmetic modulo an odd number.
//!
//! Nothing here is public outside the crate: tokens reach these verifiers
//! only through [`crate::keys::BoundKey`], which binds each key to one
//! algorithm. SECURITY.md at the repository root says why they are
//! hand-written and how they are tested.

pub(crate) mod montgomery;
pub(crate) mod p256;
pub(crate) mod rsa;
