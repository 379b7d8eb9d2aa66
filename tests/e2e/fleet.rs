//! A fleet on one machine (issue 14): three Envoys with two workers each, one auth service,
//! one upstream, steady load on every Envoy. What the service is asked, per Envoy and
//! endpoint, and how fast revocations reach every edge, one of them restarted mid-run.

use std::time::Duration;

use edge_auth_e2e::fleet::{revoke, Calls, Credential, Fleet, FleetOptions, Revocation};

const POLL_S: u64 = 1;
const WORKERS: u64 = 2;
/// One poll interval, plus the time an answer takes on a busy shared machine.
const WITHIN: Duration = Duration::from_millis(POLL_S * 1_000 + 1_500);
const WARMUP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(4);

fn fleet() -> Fleet {
    Fleet::start(FleetOptions {
        concurrency: WORKERS as u32,
        revocation_poll_s: POLL_S,
        ..FleetOptions::default()
    })
}

/// Two API keys and two session tokens of `acme`, accepted at every edge.
fn credentials(fleet: &Fleet) -> Vec<Credential> {
    let (k1, _) = fleet.key("acme", "svc-a");
    let (k2, _) = fleet.key("acme", "svc-b");
    let t1 = fleet.session(&k1, "user-a");
    let t2 = fleet.session(&k2, "user-b");
    let creds = vec![
        Credential::Key(k1),
        Credential::Key(k2),
        Credential::Token(t1),
        Credential::Token(t2),
    ];
    for c in &creds {
        assert!(
            fleet.accepted_everywhere(c, 4, Duration::from_secs(10)),
            "{c:?} is not accepted"
        );
    }
    creds
}

/// Feed polls one poller makes in `WINDOW` (a poll may straddle each end).
fn polls_in_window() -> u64 {
    WINDOW.as_secs() / POLL_S + 2
}

fn times_to_refusal(fleet: &mut Fleet, kinds: &[Revocation], trials: usize, restart_after: Option<usize>) {
    for kind in kinds {
        for n in 0..trials {
            if restart_after == Some(n) && *kind == kinds[0] {
                fleet.restart(fleet.edges.len() - 1);
            }
            let (cred, acknowledged) = revoke(fleet, *kind, n);
            let took = fleet.time_to_refusal(&cred, acknowledged, WITHIN, edge_auth_e2e::IN_A_ROW);
            assert!(
                took.is_some(),
                "{} revocation #{n}: some edge still accepts it {WITHIN:?} after the service acknowledged it \
                 (restarted edges: {:?})",
                kind.name(),
                fleet.restarted
            );
        }
    }
}

/// One fleet for what issue 14 promises and the filter now does (one start-up: each costs
/// three Envoys and a service).
#[test]
fn one_fetch_per_envoy_one_verification_per_token_and_every_revocation_within_a_poll() {
    let mut fleet = fleet();
    let creds = credentials(&fleet);

    // steady state: no per-request calls (the answers are cached), and only the worker
    // holding the feed's lease polls: one poller per Envoy, whatever its worker count
    let (calls, _) = fleet.steady_calls(&creds, false, WARMUP, WINDOW);
    for (i, c) in calls.iter().enumerate() {
        let Calls {
            lookups,
            feed,
            jwks,
            other,
        } = *c;
        assert_eq!((lookups, other), (0, 0), "edge {i}: {c:?}");
        assert!(feed >= 1 && feed <= polls_in_window(), "edge {i}: {c:?}");
        assert!(jwks <= 1, "edge {i} refetched the JWKS: {c:?}");
    }

    // each distinct token's signature was verified once per Envoy (credentials() sent each
    // one to every edge several times, one request after another), whatever worker served it
    let tokens = creds.iter().filter(|c| matches!(c, Credential::Token(_))).count() as u64;
    for (i, v) in fleet.signature_verifications().iter().enumerate() {
        assert_eq!(
            *v,
            Some(tokens),
            "edge {i}: signature verifications for {tokens} distinct tokens"
        );
    }

    // every kind of revocation reaches every edge within a poll and an answer, an edge
    // restarted during the run included; API keys too, though their answers are cached
    times_to_refusal(
        &mut fleet,
        &[
            Revocation::Session,
            Revocation::Subject,
            Revocation::Global,
            Revocation::Key,
            Revocation::TenantKeys,
        ],
        2,
        Some(1),
    );
    assert_eq!(fleet.restarted, vec![2]);
}

/// The fleet's edges and service share a key-tag secret (`api_keys.key_tags`): the
/// flood's invented keys are refused at the edge, so the service sees only feed polls.
#[test]
fn a_flood_of_invented_keys_costs_the_service_no_lookup() {
    let fleet = fleet();
    let creds = credentials(&fleet);
    let (calls, flooded) = fleet.steady_calls(&creds, true, WARMUP, WINDOW);
    assert!(flooded > 0, "the flood sent nothing");
    for (i, c) in calls.iter().enumerate() {
        assert_eq!((c.lookups, c.other), (0, 0), "edge {i}: {c:?}");
        assert!(c.feed >= 1 && c.feed <= polls_in_window(), "edge {i}: {c:?}");
    }
}
