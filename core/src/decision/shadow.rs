//! Report-only rules (`"mode": "shadow"` on a rule, or on the whole filter).
//!
//! Every check of a shadow rule runs as if it were enforced: the request
//! waits for a JWKS fetch or an API-key lookup like any other, and its
//! verdict is the one an enforcing filter would give. Then:
//!
//! - a would-be allow is applied as an allow: credential places emptied,
//!   identity headers written, `allowed.*` counted;
//! - a would-be refusal (401, 403, 503, and the 400s of a rule: ambiguous
//!   credentials, a preflight with a body) lets the request go upstream as
//!   the client sent it, with no identity headers (the client's copies of
//!   the filter's headers were removed before any decision), and the shell
//!   counts `shadow_denied.<reason>` instead of `denied.<reason>`: nothing
//!   the filter vouches for reaches the upstream, which still authenticates
//!   the request as it did before the filter;
//! - a CORS preflight answered at the edge is still answered.
//!
//! A `:path` the filter cannot normalise (`bad_path`) is refused before a
//! rule is chosen, so it is refused (400) in shadow too: the upstream could
//! route it differently from the rule that would be checked, and no rule's
//! mode can speak for it.

use super::{Allow, Outcome, Verdict};

/// `outcome` for a report-only rule named `rule`.
pub(super) fn report_only<'c>(outcome: Outcome<'c>, rule: &'c str) -> Outcome<'c> {
    match outcome.verdict {
        Verdict::Deny(d) => Outcome {
            verdict: Verdict::Allow(Allow {
                rule,
                shadow: Some(d),
                ..Allow::default()
            }),
            ..outcome
        },
        verdict => Outcome { verdict, ..outcome },
    }
}
