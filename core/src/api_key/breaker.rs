//! A circuit breaker for auth-service calls, and the stale-if-error rule for
//! cached verdicts. Pure: the caller passes the time (milliseconds, any
//! monotonic-enough epoch) into every call.
//!
//! ```text
//!            failure_threshold consecutive failures
//!   Closed ───────────────────────────────────────────▶ Open { until = now + open_ms }
//!     ▲                                                   │ allow() at now >= until
//!     │ probe succeeds                                    ▼
//!     └──────────────────────────────────────────────── HalfOpen (one probe in flight)
//!                        probe fails: Open again for open_ms ──▲
//! ```

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (0 is treated as 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe is let through.
    pub open_ms: u64,
}

/// The breaker's state, as reported by [`Breaker::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are rejected until `until_ms` (the first [`Breaker::allow`] at or
    /// after it moves to [`BreakerState::HalfOpen`]).
    Open {
        /// When the cool-down ends.
        until_ms: u64,
    },
    /// One probe call is (or may be) in flight; its outcome closes or reopens
    /// the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The state as a gauge value: 0 closed, 1 half-open, 2 open.
    pub fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        }
    }
}

/// What [`Breaker::allow`] lets the caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Make the call (the breaker is closed).
    Call,
    /// Make the call as the single half-open probe; report its outcome with
    /// [`Breaker::on_success`] or [`Breaker::on_failure`].
    Probe,
    /// Do not call: fail fast (or serve a stale verdict, see [`StaleIfError`]).
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// `probe_since_ms`: when the outstanding probe was let through.
    HalfOpen {
        probe_since_ms: Option<u64>,
    },
}

/// A consecutive-failure circuit breaker.
///
/// Every call the caller makes after [`Breaker::allow`] returned
/// [`Allowance::Call`] or [`Allowance::Probe`] must be reported once, with
/// [`Breaker::on_success`] or [`Breaker::on_failure`] (a dispatch that fails
/// synchronously, or times out, is a failure). Outcomes reported while the
/// breaker is open (late answers to calls made before it opened) are ignored.
/// A probe whose outcome is never reported is given up on after `open_ms`,
/// and the next [`Breaker::allow`] lets a new probe through, so a lost
/// callback cannot wedge the breaker half-open.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Inner,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            inner: Inner::Closed { failures: 0 },
        }
    }

    /// The policy this breaker was built with.
    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// Whether a call may be made at `now_ms`. While open, the first call at
    /// or after the cool-down's end moves the breaker to half-open and is the
    /// probe; further calls are rejected until the probe's outcome is
    /// reported (or it is given up on, `open_ms` after it started).
    pub fn allow(&mut self, now_ms: u64) -> Allowance {
        match self.inner {
            Inner::Closed { .. } => Allowance::Call,
            Inner::Open { until_ms } if now_ms < until_ms => Allowance::Reject,
            Inner::Open { .. } | Inner::HalfOpen { probe_since_ms: None } => self.start_probe(now_ms),
            Inner::HalfOpen {
                probe_since_ms: Some(since),
            } => {
                if now_ms >= since.saturating_add(self.policy.open_ms) && now_ms > since {
                    self.start_probe(now_ms)
                } else {
                    Allowance::Reject
                }
            }
        }
    }

    fn start_probe(&mut self, now_ms: u64) -> Allowance {
        self.inner = Inner::HalfOpen {
            probe_since_ms: Some(now_ms),
        };
        Allowance::Probe
    }

    /// Reports a successful call: resets the failure count, and closes a
    /// half-open breaker. Ignored while open.
    pub fn on_success(&mut self, _now_ms: u64) {
        match self.inner {
            Inner::Closed { .. } | Inner::HalfOpen { .. } => self.inner = Inner::Closed { failures: 0 },
            Inner::Open { .. } => {}
        }
    }

    /// Reports a failed call: counts it while closed (opening the breaker for
    /// `open_ms` at the threshold), and reopens a half-open breaker for
    /// `open_ms`. Ignored while open (the cool-down is not extended).
    pub fn on_failure(&mut self, now_ms: u64) {
        let open = Inner::Open {
            until_ms: now_ms.saturating_add(self.policy.open_ms),
        };
        match self.inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                self.inner = if failures >= self.policy.failure_threshold.max(1) {
                    open
                } else {
                    Inner::Closed { failures }
                };
            }
            Inner::HalfOpen { .. } => self.inner = open,
            Inner::Open { .. } => {}
        }
    }

    /// The current state. An open breaker whose cool-down has passed still
    /// reports `Open` until the next [`Breaker::allow`].
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until_ms } => BreakerState::Open { until_ms },
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The state as a gauge value (see [`BreakerState::code`]).
    pub fn state_code(&self) -> u8 {
        self.state().code()
    }

    /// The state as text, to share it between workers (see [`Breaker::decode`]).
    pub fn encode(&self) -> String {
        match self.inner {
            Inner::Closed { failures } => format!("closed {failures}"),
            Inner::Open { until_ms } => format!("open {until_ms}"),
            Inner::HalfOpen { probe_since_ms: None } => "half -".to_owned(),
            Inner::HalfOpen {
                probe_since_ms: Some(since),
            } => format!("half {since}"),
        }
    }

    /// A breaker with `policy` in the state [`Breaker::encode`] wrote;
    /// `None` for anything else.
    pub fn decode(policy: BreakerPolicy, text: &str) -> Option<Breaker> {
        let (kind, value) = text.split_once(' ')?;
        let number = || value.parse::<u64>().ok();
        let inner = match kind {
            "closed" => Inner::Closed {
                failures: value.parse().ok()?,
            },
            "open" => Inner::Open { until_ms: number()? },
            "half" if value == "-" => Inner::HalfOpen { probe_since_ms: None },
            "half" => Inner::HalfOpen {
                probe_since_ms: Some(number()?),
            },
            _ => return None,
        };
        Some(Breaker { policy, inner })
    }

    /// Consecutive failures counted while closed (0 in other states).
    pub fn consecutive_failures(&self) -> u32 {
        match self.inner {
            Inner::Closed { failures } => failures,
            _ => 0,
        }
    }
}

/// Stale-if-error: how long past its expiry a cached auth-service verdict may
/// still be used when the service cannot be asked (the breaker rejects the
/// call, or the call fails). This bounds how late a revocation can take
/// effect during an outage; 0 disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StaleIfError {
    /// Grace period after expiry, in milliseconds.
    pub max_stale_ms: u64,
}

/// How a cached verdict expiring at `expires_at_ms` may be used at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before expiry: use it without asking the service.
    Fresh,
    /// Expired, but within the grace period: ask the service, and use this
    /// verdict only if the service cannot answer.
    StaleIfError,
    /// Past the grace period: never use it.
    Expired,
}

impl StaleIfError {
    /// The freshness at `now_ms` of a verdict valid until `expires_at_ms`
    /// (exclusive).
    pub fn freshness(&self, expires_at_ms: u64, now_ms: u64) -> Freshness {
        if now_ms < expires_at_ms {
            Freshness::Fresh
        } else if now_ms < expires_at_ms.saturating_add(self.max_stale_ms) {
            Freshness::StaleIfError
        } else {
            Freshness::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn breaker(threshold: u32, open_ms: u64) -> Breaker {
        Breaker::new(BreakerPolicy {
            failure_threshold: threshold,
            open_ms,
        })
    }

    /// A breaker that opened at `t` (threshold 3, open 1000 ms).
    fn opened_at(t: u64) -> Breaker {
        let mut b = breaker(3, 1000);
        for _ in 0..3 {
            assert_eq!(b.allow(t), Allowance::Call);
            b.on_failure(t);
        }
        assert_eq!(b.state(), BreakerState::Open { until_ms: t + 1000 });
        b
    }

    #[test]
    fn starts_closed_and_calls() {
        let mut b = breaker(3, 1000);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.state_code(), 0);
        assert_eq!(b.allow(0), Allowance::Call);
        assert_eq!(b.allow(0), Allowance::Call);
        assert_eq!(b.policy().open_ms, 1000);
    }

    #[test]
    fn opens_at_the_threshold_of_consecutive_failures() {
        let mut b = breaker(3, 1000);
        b.on_failure(10);
        b.on_failure(20);
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allow(25), Allowance::Call);
        b.on_failure(30);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1030 });
        assert_eq!(b.state_code(), 2);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = breaker(3, 1000);
        b.on_failure(0);
        b.on_failure(0);
        b.on_success(0);
        assert_eq!(b.consecutive_failures(), 0);
        b.on_failure(0);
        b.on_failure(0);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(0);
        assert_eq!(b.state_code(), 2);
    }

    #[test]
    fn threshold_zero_or_one_opens_on_first_failure() {
        for threshold in [0, 1] {
            let mut b = breaker(threshold, 50);
            b.on_failure(7);
            assert_eq!(b.state(), BreakerState::Open { until_ms: 57 }, "{threshold}");
        }
    }

    #[test]
    fn open_rejects_until_the_cool_down_ends() {
        let mut b = opened_at(100);
        assert_eq!(b.allow(100), Allowance::Reject);
        assert_eq!(b.allow(1099), Allowance::Reject);
        assert_eq!(b.state_code(), 2);
        // until_ms itself is the first half-open moment.
        assert_eq!(b.allow(1100), Allowance::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.state_code(), 1);
    }

    #[test]
    fn late_cool_down_end_still_probes() {
        let mut b = opened_at(100);
        assert_eq!(b.allow(50_000), Allowance::Probe);
    }

    #[test]
    fn state_does_not_advance_without_allow() {
        let b = opened_at(0);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1000 });
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let mut b = opened_at(0);
        assert_eq!(b.allow(1000), Allowance::Probe);
        assert_eq!(b.allow(1000), Allowance::Reject);
        assert_eq!(b.allow(1500), Allowance::Reject);
        assert_eq!(b.allow(1999), Allowance::Reject);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn probe_success_closes_and_resets() {
        let mut b = opened_at(0);
        assert_eq!(b.allow(1000), Allowance::Probe);
        b.on_success(1010);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.allow(1011), Allowance::Call);
        // A full threshold is needed to open again.
        b.on_failure(1020);
        b.on_failure(1020);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(1020);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2020 });
    }

    #[test]
    fn probe_failure_reopens_for_open_ms() {
        let mut b = opened_at(0);
        assert_eq!(b.allow(1000), Allowance::Probe);
        b.on_failure(1200);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2200 });
        assert_eq!(b.allow(2199), Allowance::Reject);
        assert_eq!(b.allow(2200), Allowance::Probe);
        b.on_success(2210);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let mut b = opened_at(0);
        // Late answers to calls made while closed.
        b.on_failure(500);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1000 });
        b.on_success(600);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1000 });
        assert_eq!(b.allow(999), Allowance::Reject);
        assert_eq!(b.allow(1000), Allowance::Probe);
    }

    #[test]
    fn lost_probe_is_given_up_on_after_open_ms() {
        let mut b = opened_at(0);
        assert_eq!(b.allow(1000), Allowance::Probe);
        assert_eq!(b.allow(1999), Allowance::Reject);
        assert_eq!(b.allow(2000), Allowance::Probe);
        assert_eq!(b.allow(2000), Allowance::Reject);
        b.on_success(2001);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_open_ms_probes_immediately_one_at_a_time() {
        let mut b = breaker(1, 0);
        b.on_failure(10);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 10 });
        assert_eq!(b.allow(10), Allowance::Probe);
        // The same instant: still one probe at a time.
        assert_eq!(b.allow(10), Allowance::Reject);
        // Lost-probe give-up after open_ms = 0 needs time to move.
        assert_eq!(b.allow(11), Allowance::Probe);
        b.on_failure(12);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 12 });
    }

    #[test]
    fn times_saturate() {
        let mut b = breaker(1, u64::MAX);
        b.on_failure(5);
        assert_eq!(b.state(), BreakerState::Open { until_ms: u64::MAX });
        assert_eq!(b.allow(u64::MAX - 1), Allowance::Reject);
        assert_eq!(b.allow(u64::MAX), Allowance::Probe);
        assert_eq!(b.allow(u64::MAX), Allowance::Reject);

        let mut b = breaker(u32::MAX, 1);
        for _ in 0..10 {
            b.on_failure(0);
        }
        assert_eq!(b.consecutive_failures(), 10);
    }

    #[test]
    fn stale_if_error_boundaries() {
        let p = StaleIfError { max_stale_ms: 500 };
        assert_eq!(p.freshness(1000, 0), Freshness::Fresh);
        assert_eq!(p.freshness(1000, 999), Freshness::Fresh);
        assert_eq!(p.freshness(1000, 1000), Freshness::StaleIfError);
        assert_eq!(p.freshness(1000, 1499), Freshness::StaleIfError);
        assert_eq!(p.freshness(1000, 1500), Freshness::Expired);

        let off = StaleIfError::default();
        assert_eq!(off.freshness(1000, 999), Freshness::Fresh);
        assert_eq!(off.freshness(1000, 1000), Freshness::Expired);

        let forever = StaleIfError { max_stale_ms: u64::MAX };
        assert_eq!(forever.freshness(1000, u64::MAX - 1), Freshness::StaleIfError);
    }
}
