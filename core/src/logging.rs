//! What the filter logs, at which level, and how often a warning that
//! anyone can trigger may reach the log. The shell only writes the lines.

use crate::decision::Deny;
use crate::response;

/// A log level, as the core asks for it (the shell maps it to the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Minimum time between two rate-limited warnings of a worker.
pub const WARN_INTERVAL_MS: u64 = 10_000;

/// The rate limit of the warnings a client or an unreachable service can
/// trigger at will (refused tokens whose keys are unavailable, failed polls
/// and lookups): at most one per [`WARN_INTERVAL_MS`] per worker, shared by
/// all of them. Every such event is still counted in the metrics.
#[derive(Debug, Default)]
pub struct WarnLimiter {
    last_ms: Option<u64>,
}

impl WarnLimiter {
    /// Whether a rate-limited warning may be logged at `now_ms`; records it when it may.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let allowed = self
            .last_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= WARN_INTERVAL_MS);
        if allowed {
            self.last_ms = Some(now_ms);
        }
        allowed
    }
}

/// The level a refused request is logged at: a warning when the token was
/// refused for the issuer's fault (no usable key), rate-limited through
/// `limiter` (`None`: not logged); a debug line otherwise. `now_ms` is only
/// read for a warning.
pub fn denial_level(d: Deny<'_>, limiter: &mut WarnLimiter, now_ms: impl FnOnce() -> u64) -> Option<Level> {
    match d {
        Deny::Token(e) if response::is_operational(e) => limiter.allow(now_ms()).then_some(Level::Warn),
        _ => Some(Level::Debug),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::jwt::JwtError;

    #[test]
    fn warnings_are_rate_limited_per_interval() {
        let mut l = WarnLimiter::default();
        assert!(l.allow(5));
        assert!(!l.allow(5));
        assert!(!l.allow(5 + WARN_INTERVAL_MS - 1));
        assert!(l.allow(5 + WARN_INTERVAL_MS));
        // a clock that goes back never unlocks a burst
        assert!(!l.allow(0));
    }

    #[test]
    fn only_operational_denials_are_warnings_and_only_they_read_the_clock() {
        let mut l = WarnLimiter::default();
        let no_clock = || -> u64 { panic!("the clock is read for a debug line") };
        assert_eq!(denial_level(Deny::MissingToken, &mut l, no_clock), Some(Level::Debug));
        assert_eq!(
            denial_level(Deny::Token(JwtError::BadSignature), &mut l, no_clock),
            Some(Level::Debug)
        );
        let keys = Deny::Token(JwtError::KeysUnavailable);
        assert_eq!(denial_level(keys, &mut l, || 1_000), Some(Level::Warn));
        assert_eq!(denial_level(Deny::Token(JwtError::NoKey), &mut l, || 2_000), None);
        assert_eq!(
            denial_level(keys, &mut l, || 1_000 + WARN_INTERVAL_MS),
            Some(Level::Warn)
        );
    }
}
