//! One entry's token state, as the lease holder keeps it and publishes it
//! for every worker: the token and its times, consecutive failures (backoff
//! and circuit breaker), and until when the issuer's refusal is honoured.
//!
//! - refresh at `min(expires_at - refresh_before, obtained_at + lifetime/2)`
//!   (half the lifetime when the buffer is the whole lifetime or longer);
//! - serve only while `now < expires_at - 5 s`: never an expired token;
//! - after a failure, wait 1 s, 2 s, 4 s, ... (capped at `backoff_max_s`),
//!   each jittered uniformly in `[d/2, d]`; a 429's `Retry-After` is honoured
//!   up to the same cap;
//! - after `breaker_failures` failures in a row, no fetch for
//!   `breaker_open_s`, then one trial;
//! - rejected credentials: the token dropped, no fetch for `rejected_retry_s`.

use super::answer::is_b64token;
use super::EgressToken;

/// A token is not sent in its last 5 seconds: it could expire in transit.
pub const SERVE_MARGIN_MS: u64 = 5_000;
/// The first backoff after a failure.
pub const FIRST_BACKOFF_MS: u64 = 1_000;

/// The token held.
#[derive(Clone, PartialEq, Eq)]
pub struct Held {
    pub value: String,
    pub obtained_at_ms: u64,
    pub expires_at_ms: u64,
    pub refresh_at_ms: u64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Held {{ token: {}, obtained_at_ms: {}, expires_at_ms: {}, refresh_at_ms: {} }}",
            super::token_fingerprint(&self.value),
            self.obtained_at_ms,
            self.expires_at_ms,
            self.refresh_at_ms
        )
    }
}

/// An entry's state. The default: nothing held, a fetch due now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenState {
    pub token: Option<Held>,
    /// Failures in a row since the last token (or rejection).
    pub failures: u32,
    /// No fetch before this (host ms): the refresh time, a backoff, the
    /// breaker's open period or the rejection's end.
    pub next_attempt_ms: u64,
    /// The issuer's refusal is honoured until then.
    pub rejected_until_ms: u64,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// The wait before the next attempt.
    pub delay_ms: u64,
    /// The failure opened (or re-opened) the breaker.
    pub breaker_opened: bool,
}

impl TokenState {
    /// The token to send at `now_ms`, if one may be.
    pub fn servable(&self, now_ms: u64) -> Option<&str> {
        self.token
            .as_ref()
            .filter(|t| now_ms.saturating_add(SERVE_MARGIN_MS) < t.expires_at_ms)
            .map(|t| t.value.as_str())
    }

    /// Whether the holder should fetch at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_attempt_ms
    }

    /// Whether the breaker is open: enough failures in a row, its period not over.
    pub fn breaker_open(&self, e: &EgressToken, now_ms: u64) -> bool {
        self.failures >= e.breaker_failures && now_ms < self.next_attempt_ms
    }

    /// Whether the issuer's refusal is still honoured.
    pub fn rejected(&self, now_ms: u64) -> bool {
        now_ms < self.rejected_until_ms
    }

    /// Seconds until the next attempt, at least 1 (a `retry-after`).
    pub fn retry_after_s(&self, now_ms: u64) -> u64 {
        self.next_attempt_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }

    /// A token arrived, valid for `expires_in_s` from `now_ms`: when its
    /// request was sent (the issuer's clock started later).
    pub fn succeed(&mut self, e: &EgressToken, value: String, expires_in_s: u64, now_ms: u64) {
        let lifetime = expires_in_s.saturating_mul(1000);
        let expires_at_ms = now_ms.saturating_add(lifetime);
        let half = now_ms.saturating_add(lifetime / 2);
        let refresh_at_ms = if e.refresh_before_ms >= lifetime {
            half
        } else {
            (expires_at_ms - e.refresh_before_ms).min(half)
        };
        self.token = Some(Held {
            value,
            obtained_at_ms: now_ms,
            expires_at_ms,
            refresh_at_ms,
        });
        self.failures = 0;
        self.next_attempt_ms = refresh_at_ms;
        self.rejected_until_ms = 0;
    }

    /// A fetch failed at `now_ms` (`retry_after_s` from a 429); `random`
    /// draws the jitter. The token held, if any, is kept (it is served until
    /// its margin).
    pub fn fail(&mut self, e: &EgressToken, retry_after_s: Option<u64>, random: u64, now_ms: u64) -> Failed {
        self.failures = self.failures.saturating_add(1);
        let breaker_opened = self.failures >= e.breaker_failures;
        let delay_ms = if breaker_opened {
            e.breaker_open_ms
        } else {
            let d = backoff_ms(self.failures, e.backoff_max_ms);
            let jittered = jitter(d, random);
            let asked = retry_after_s.map_or(0, |s| s.saturating_mul(1000));
            jittered.max(asked).min(e.backoff_max_ms)
        };
        self.next_attempt_ms = now_ms.saturating_add(delay_ms);
        Failed {
            delay_ms,
            breaker_opened,
        }
    }

    /// The issuer refused the credentials at `now_ms`.
    pub fn reject(&mut self, e: &EgressToken, now_ms: u64) {
        self.token = None;
        self.failures = 0;
        self.rejected_until_ms = now_ms.saturating_add(e.rejected_retry_ms);
        self.next_attempt_ms = self.rejected_until_ms;
    }

    /// The state as published in shared data (the token included: shared
    /// data stays inside the proxy).
    pub fn encode(&self) -> Vec<u8> {
        let head = format!(
            "egress1 {} {} {}",
            self.failures, self.next_attempt_ms, self.rejected_until_ms
        );
        match &self.token {
            None => format!("{head} n").into_bytes(),
            Some(t) => format!(
                "{head} t {} {} {} {}",
                t.obtained_at_ms, t.expires_at_ms, t.refresh_at_ms, t.value
            )
            .into_bytes(),
        }
    }

    /// A published state, checked as strictly as an answer (`None`: unreadable).
    pub fn decode(bytes: &[u8]) -> Option<TokenState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut f = text.split(' ');
        if f.next()? != "egress1" {
            return None;
        }
        let failures = f.next()?.parse().ok()?;
        let next_attempt_ms = f.next()?.parse().ok()?;
        let rejected_until_ms = f.next()?.parse().ok()?;
        let token = match f.next()? {
            "n" => None,
            "t" => {
                let obtained_at_ms = f.next()?.parse().ok()?;
                let expires_at_ms = f.next()?.parse().ok()?;
                let refresh_at_ms = f.next()?.parse().ok()?;
                let value = f.next()?;
                if value.len() > super::answer::MAX_TOKEN_BYTES || !is_b64token(value) {
                    return None;
                }
                Some(Held {
                    value: value.to_owned(),
                    obtained_at_ms,
                    expires_at_ms,
                    refresh_at_ms,
                })
            }
            _ => return None,
        };
        f.next().is_none().then_some(TokenState {
            token,
            failures,
            next_attempt_ms,
            rejected_until_ms,
        })
    }
}

/// The backoff after `failures` failures in a row: 1 s doubling, capped.
pub fn backoff_ms(failures: u32, max_ms: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    (FIRST_BACKOFF_MS << exp).min(max_ms)
}

/// `d` jittered uniformly into `[d/2, d]` by `random`.
pub fn jitter(d: u64, random: u64) -> u64 {
    let low = d / 2;
    low + random % (d - low + 1)
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
    fn refresh_is_the_earlier_of_buffer_and_half_life() {
        let e = entry(); // refresh_before 300 s
        let mut s = TokenState::default();
        s.succeed(&e, "tok".into(), 3600, NOW);
        let t = s.token.clone().unwrap();
        assert_eq!(t.expires_at_ms, NOW + 3_600_000);
        assert_eq!(t.refresh_at_ms, NOW + 1_800_000);
        s.succeed(&e, "tok".into(), 86_400, NOW);
        assert_eq!(s.token.clone().unwrap().refresh_at_ms, NOW + 43_200_000);
        assert_eq!(s.next_attempt_ms, NOW + 43_200_000);
        s.succeed(&e, "tok".into(), 400, NOW);
        assert_eq!(s.token.clone().unwrap().refresh_at_ms, NOW + 100_000);
        s.succeed(&e, "tok".into(), 500, NOW);
        assert_eq!(s.token.clone().unwrap().refresh_at_ms, NOW + 200_000);
        // a buffer as long as the lifetime: half the lifetime, not a refetch at once
        s.succeed(&e, "tok".into(), 60, NOW);
        assert_eq!(s.token.unwrap().refresh_at_ms, NOW + 30_000);
    }

    #[test]
    fn a_token_is_never_served_in_its_last_five_seconds() {
        let e = entry();
        let mut s = TokenState::default();
        assert_eq!(s.servable(NOW), None);
        assert!(s.due(NOW));
        s.succeed(&e, "tok".into(), 10, NOW);
        assert_eq!(s.servable(NOW + 4_999), Some("tok"));
        assert_eq!(s.servable(NOW + 5_000), None);
        assert_eq!(s.servable(NOW + 20_000), None);
        assert_eq!(s.servable(u64::MAX), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        assert_eq!(
            (1..=7).map(|f| backoff_ms(f, 30_000)).collect::<Vec<_>>(),
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(backoff_ms(u32::MAX, 300_000), 300_000);
        for r in [0, 1, 499, 500, 501, u64::MAX] {
            let j = jitter(1_000, r);
            assert!((500..=1_000).contains(&j), "{j}");
        }
        assert_eq!(jitter(1_000, 0), 500);
        assert_eq!(jitter(1_000, 500), 1_000);
    }

    #[test]
    fn failures_back_off_then_open_the_breaker_and_a_trial_closes_it() {
        let mut e = entry();
        e.breaker_failures = 3;
        let mut s = TokenState::default();
        let f = s.fail(&e, None, u64::MAX, NOW);
        assert!((500..=1_000).contains(&f.delay_ms) && !f.breaker_opened);
        let f = s.fail(&e, None, 0, NOW);
        assert_eq!((f.delay_ms, f.breaker_opened), (1_000, false));
        assert!(!s.breaker_open(&e, NOW));
        let f = s.fail(&e, None, 0, NOW);
        assert_eq!((f.delay_ms, f.breaker_opened), (30_000, true));
        assert!(s.breaker_open(&e, NOW + 29_999));
        assert!(!s.due(NOW + 29_999));
        // half-open: the trial is due, and its failure opens it again
        assert!(!s.breaker_open(&e, NOW + 30_000) && s.due(NOW + 30_000));
        let f = s.fail(&e, None, 0, NOW + 30_000);
        assert!(f.breaker_opened && s.breaker_open(&e, NOW + 30_001));
        s.succeed(&e, "tok".into(), 600, NOW + 60_000);
        assert_eq!(s.failures, 0);
        assert!(!s.breaker_open(&e, NOW + 60_000));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let e = entry(); // backoff_max 30 s
        let mut s = TokenState::default();
        assert_eq!(s.fail(&e, Some(7), 0, NOW).delay_ms, 7_000);
        let mut s = TokenState::default();
        assert_eq!(s.fail(&e, Some(0), 500, NOW).delay_ms, 1_000);
        let mut s = TokenState::default();
        assert_eq!(s.fail(&e, Some(999_999_999), 0, NOW).delay_ms, 30_000);
        assert_eq!(s.retry_after_s(NOW), 30);
        assert_eq!(s.retry_after_s(NOW + 29_001), 1);
        assert_eq!(s.retry_after_s(NOW + 90_000), 1);
    }

    #[test]
    fn a_rejection_drops_the_token_and_waits() {
        let e = entry(); // rejected_retry 60 s
        let mut s = TokenState::default();
        s.succeed(&e, "tok".into(), 600, NOW);
        s.fail(&e, None, 0, NOW);
        s.reject(&e, NOW);
        assert_eq!(s.servable(NOW), None);
        assert!(s.rejected(NOW + 59_999) && !s.due(NOW + 59_999));
        assert!(!s.rejected(NOW + 60_000) && s.due(NOW + 60_000));
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn published_state_round_trips_and_refuses_what_it_did_not_write() {
        let e = entry();
        let mut s = TokenState::default();
        assert_eq!(TokenState::decode(&s.encode()), Some(s.clone()));
        s.succeed(&e, "eyJ.a-b_c~d+e/f==".into(), 600, NOW);
        s.fail(&e, Some(3), 5, NOW);
        assert_eq!(TokenState::decode(&s.encode()), Some(s.clone()));
        for bad in [
            &b""[..],
            b"egress1 0 0 0",
            b"egress1 0 0 0 n extra",
            b"egress2 0 0 0 n",
            b"egress1 0 0 0 t 1 2 3 a b",
            b"egress1 0 0 0 t 1 2 3 a\r\nb",
            b"egress1 0 0 0 t 1 2 3 ",
            b"egress1 -1 0 0 n",
            b"egress1 0 0 0 x",
        ] {
            assert_eq!(TokenState::decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!format!("{s:?}").contains("eyJ"));
    }
}
