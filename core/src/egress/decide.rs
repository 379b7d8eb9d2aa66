//! What an egress request gets: the first entry whose `match` accepts it
//! decides; its token state says inject, wait, or refuse with a 503.

use crate::decision::{destination, Request};
use crate::policy::destination::Needs;
use crate::response::Reply;

use super::schedule::TokenState;
use super::EgressToken;

/// How far ahead of a due attempt a request may start waiting: a request
/// arriving during a short backoff waits for the attempt rather than being
/// refused (it waits at most `timeout_ms` + 1 s in all).
pub const WAIT_AHEAD_MS: u64 = 1_000;
/// Beyond the token endpoint's timeout, how long a request may wait.
pub const WAIT_GRACE_MS: u64 = 1_000;
/// The most requests one worker parks for one entry's token; past it a
/// request that would wait gets the `503` at once (a burst against a cold or
/// failing issuer cannot grow the list, nor the cost of forgetting a request).
pub const MAX_WAITING: usize = 1024;

/// The verdict on one request.
#[derive(Clone, PartialEq, Eq)]
pub enum EgressVerdict<'a> {
    /// No entry matches: the request goes on untouched.
    Unmatched,
    /// Replace every `authorization` with `Bearer <token>`.
    Inject { entry: usize, token: &'a str },
    /// Pause until entry's token arrives or its fetch fails.
    Wait { entry: usize },
    /// 503 `egress_token_unavailable`.
    Unavailable { entry: usize, retry_after_s: u64 },
    /// 503 `egress_credentials_rejected`.
    Rejected { entry: usize, retry_after_s: u64 },
}

impl std::fmt::Debug for EgressVerdict<'_> {
    // never the token
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressVerdict::Unmatched => write!(f, "Unmatched"),
            EgressVerdict::Inject { entry, .. } => write!(f, "Inject {{ entry: {entry} }}"),
            EgressVerdict::Wait { entry } => write!(f, "Wait {{ entry: {entry} }}"),
            EgressVerdict::Unavailable { entry, retry_after_s } => {
                write!(f, "Unavailable {{ entry: {entry}, retry_after_s: {retry_after_s} }}")
            }
            EgressVerdict::Rejected { entry, retry_after_s } => {
                write!(f, "Rejected {{ entry: {entry}, retry_after_s: {retry_after_s} }}")
            }
        }
    }
}

/// The first entry that accepts the request (`path`: its `:path`). A host
/// that cannot be read one way matches no host condition. The request's
/// destination and normalised path are worked out only when an entry with
/// a `match` is reached: an entry without one takes the request as it is.
pub fn select(entries: &[EgressToken], needs: &Needs, path: &str, req: &mut dyn Request) -> Option<usize> {
    let mut facts = None;
    entries.iter().position(|e| {
        let Some(m) = &e.matcher else { return true };
        let (dest, normalized) =
            facts.get_or_insert_with(|| (destination(needs, req).ok(), crate::policy::path::normalize(path).ok()));
        let Some(d) = dest else {
            return !needs.any();
        };
        m.destination.matches(d)
            && m.prefix
                .as_ref()
                .is_none_or(|p| normalized.as_ref().is_some_and(|n| n.path.starts_with(p.as_str())))
    })
}

/// Whether [`select`] may look at the request: not when the first entry has
/// no `match` (it takes every request), so the shell need not read the
/// request's headers for it.
pub fn reads_request(entries: &[EgressToken]) -> bool {
    entries.first().is_some_and(|e| e.matcher.is_some())
}

/// The verdict for a request entry `entry` (`e`, its state `s`) accepted at
/// `now_ms`. `may_wait`: false for a request that waited already.
pub fn decide<'a>(entry: usize, e: &EgressToken, s: &'a TokenState, now_ms: u64, may_wait: bool) -> EgressVerdict<'a> {
    if let Some(token) = s.servable(now_ms) {
        return EgressVerdict::Inject { entry, token };
    }
    let retry_after_s = s.retry_after_s(now_ms);
    if s.rejected(now_ms) {
        return EgressVerdict::Rejected { entry, retry_after_s };
    }
    let soon = s.next_attempt_ms <= now_ms.saturating_add(WAIT_AHEAD_MS);
    if may_wait && soon && !s.breaker_open(e, now_ms) {
        return EgressVerdict::Wait { entry };
    }
    EgressVerdict::Unavailable { entry, retry_after_s }
}

/// The request's headers, as the verdict edits them (the shell: the host's header map).
pub trait Headers {
    /// Removes every value of `name`.
    fn remove(&mut self, name: &str) -> Result<(), HeaderError>;
    /// Adds one value of `name`.
    fn add(&mut self, name: &str, value: &str) -> Result<(), HeaderError>;
    /// Whether the request is known to carry at most one value of `name`
    /// (the shell: from the header map it read). `false` when unknown.
    fn at_most_one(&self, _name: &str) -> bool {
        false
    }
    /// Sets `name` to `value`: the one value replaced, or added when there
    /// is none. Only called when [`Headers::at_most_one`] holds, where it
    /// equals a removal and an addition (one host call instead of two).
    fn replace(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        self.remove(name)?;
        self.add(name, value)
    }
}

/// A header edit the host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderError;

/// Applies an injection: every client-sent `authorization` removed, then
/// exactly one `authorization: Bearer <token>` added (a replace when the
/// request carries at most one). `Err`: an edit failed, and the request must
/// not go on (it could carry the client's header, or none).
pub fn inject(token: &str, h: &mut dyn Headers) -> Result<(), HeaderError> {
    let mut value = String::with_capacity(BEARER.len() + token.len());
    value.push_str(BEARER);
    value.push_str(token);
    if h.at_most_one("authorization") {
        return h.replace("authorization", &value);
    }
    h.remove("authorization")?;
    h.add("authorization", &value)
}

const BEARER: &str = "Bearer ";

/// The local reply of a refusal (`None` for the other verdicts).
pub fn reply(v: &EgressVerdict<'_>) -> Option<Reply> {
    let (error, description, retry_after_s) = match v {
        EgressVerdict::Unavailable { retry_after_s, .. } => (
            "egress_token_unavailable",
            "no access token for this upstream could be obtained from its issuer",
            *retry_after_s,
        ),
        EgressVerdict::Rejected { retry_after_s, .. } => (
            "egress_credentials_rejected",
            "the issuer rejected this proxy's client credentials for this upstream",
            *retry_after_s,
        ),
        _ => return None,
    };
    Some(Reply {
        status: 503,
        headers: vec![
            ("retry-after", retry_after_s.to_string()),
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
        ],
        body: serde_json::json!({"error": error, "error_description": description}).to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::entry;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_servable_token_is_injected() {
        let e = entry();
        let mut s = TokenState::default();
        s.succeed(&e, "tok".into(), 600, NOW);
        assert_eq!(
            decide(0, &e, &s, NOW, true),
            EgressVerdict::Inject { entry: 0, token: "tok" }
        );
        // refreshing: the old token is still served
        assert_eq!(
            decide(0, &e, &s, NOW + 301_000, false),
            EgressVerdict::Inject { entry: 0, token: "tok" }
        );
    }

    #[test]
    fn no_token_waits_for_a_due_fetch_once_then_refuses() {
        let e = entry();
        let s = TokenState::default();
        assert_eq!(decide(0, &e, &s, NOW, true), EgressVerdict::Wait { entry: 0 });
        assert_eq!(
            decide(0, &e, &s, NOW, false),
            EgressVerdict::Unavailable {
                entry: 0,
                retry_after_s: 1
            }
        );
    }

    #[test]
    fn backoff_breaker_and_rejection_refuse_with_retry_after() {
        let mut e = entry();
        e.breaker_failures = 2;
        let mut s = TokenState::default();
        s.fail(&e, None, 0, NOW); // 500 ms: a request waits for the attempt
        assert_eq!(decide(0, &e, &s, NOW, true), EgressVerdict::Wait { entry: 0 });
        s.fail(&e, None, 0, NOW); // breaker open 30 s
        assert_eq!(
            decide(0, &e, &s, NOW + 10_000, true),
            EgressVerdict::Unavailable {
                entry: 0,
                retry_after_s: 20
            }
        );
        let mut s = TokenState::default();
        s.fail(&e, Some(20), 0, NOW);
        assert_eq!(
            decide(0, &e, &s, NOW, true),
            EgressVerdict::Unavailable {
                entry: 0,
                retry_after_s: 20
            }
        );
        s.reject(&e, NOW);
        let v = decide(0, &e, &s, NOW + 1_500, true);
        assert_eq!(
            v,
            EgressVerdict::Rejected {
                entry: 0,
                retry_after_s: 59
            }
        );
        let r = reply(&v).unwrap();
        assert_eq!(r.status, 503);
        assert!(r.headers.contains(&("retry-after", "59".into())));
        assert!(r.body.contains("\"egress_credentials_rejected\""));
        // the rejection is over: the one attempt is due, a request waits for it
        assert_eq!(decide(0, &e, &s, NOW + 60_000, true), EgressVerdict::Wait { entry: 0 });
        let u = reply(&EgressVerdict::Unavailable {
            entry: 0,
            retry_after_s: 1,
        })
        .unwrap();
        assert!(u.body.contains("\"egress_token_unavailable\""));
        assert_eq!(reply(&EgressVerdict::Unmatched), None);
    }
}
