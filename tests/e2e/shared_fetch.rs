//! One revocation poll and one JWKS fetch per Envoy per interval, whatever
//! `--concurrency` is, counted at a fake auth service; and a configuration
//! reload (file-based LDS) that keeps the revocation state: no 503 window,
//! no extra polls, Envoy's memory bounded over 50 reloads.

use std::time::{Duration, Instant};

use edge_auth_e2e::fetch_counter::{FetchCounter, REVOKED_JTI};
use edge_auth_e2e::lds::FileLds;
use edge_auth_e2e::{wait_until, EchoServer, Envoy};

const POLLS_SENT: &str = "wasmcustom.edge_auth.revocation.polls_sent";
const JWKS_SENT: &str = "wasmcustom.edge_auth.jwks.fetches_sent";

fn status(envoy: &Envoy, token: &str) -> u16 {
    envoy.get("/r", &[("authorization", &format!("Bearer {token}"))]).status
}

#[test]
fn polls_and_jwks_fetches_per_envoy_do_not_grow_with_the_worker_count() {
    let echo = EchoServer::start();
    let runs: Vec<(u32, FetchCounter, Envoy)> = [1, 2, 4]
        .into_iter()
        .map(|c| {
            let counter = FetchCounter::start();
            let envoy = Envoy::start(counter.envoy_options(echo.port(), c)).unwrap_or_else(|e| panic!("{e}"));
            (c, counter, envoy)
        })
        .collect();
    for (c, counter, envoy) in &runs {
        let good = counter.token("good");
        assert!(
            wait_until(Duration::from_secs(10), || status(envoy, &good) == 200),
            "concurrency {c}: never allowed"
        );
    }
    // five seconds: every request on a new connection (spread over the
    // workers) is served from the shared state, never 503
    let before: Vec<_> = runs.iter().map(|(_, f, _)| f.fetches()).collect();
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_secs(5) {
        for (c, counter, envoy) in &runs {
            assert_eq!(status(envoy, &counter.token("good")), 200, "concurrency {c}");
            assert_eq!(status(envoy, &counter.token(REVOKED_JTI)), 401, "concurrency {c}");
            served += 2;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = start.elapsed().as_secs_f64();
    let mut per_run = Vec::new();
    for ((c, counter, envoy), b) in runs.iter().zip(&before) {
        let a = counter.fetches();
        let (polls, jwks) = (a.polls - b.polls, a.jwks - b.jwks);
        eprintln!("concurrency {c}: {polls} polls, {jwks} JWKS fetches in {secs:.1} s ({served} requests)");
        // one per second per Envoy, give or take the window's edges
        let most = secs.ceil() as usize + 1;
        assert!(
            (3..=most).contains(&polls),
            "concurrency {c}: {polls} polls in {secs:.1} s"
        );
        assert!(
            (3..=most).contains(&jwks),
            "concurrency {c}: {jwks} JWKS fetches in {secs:.1} s"
        );
        // the counters count what the service received (give or take one in flight)
        let total = counter.fetches();
        assert!(envoy.stat(POLLS_SENT).abs_diff(total.polls as u64) <= 1, "{c}");
        assert!(envoy.stat(JWKS_SENT).abs_diff(total.jwks as u64) <= 1, "{c}");
        per_run.push((polls, jwks));
    }
    let (p1, j1) = per_run[0];
    for (i, (p, j)) in per_run.iter().enumerate().skip(1) {
        assert!(p.abs_diff(p1) <= 1 && j.abs_diff(j1) <= 1, "{per_run:?} (run {i})");
    }
}

#[test]
fn fifty_reloads_keep_the_revocation_state_and_envoy_memory_bounded() {
    let echo = EchoServer::start();
    // a state of some size (about 100 kB as a snapshot), so that tables left
    // behind by each configuration would show in Envoy's memory
    let counter = FetchCounter::with_revoked(2_000);
    let mut opts = counter.envoy_options(echo.port(), 2);
    opts.extra_args = vec!["--drain-time-s".into(), "1".into()];
    let mut lds = FileLds::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let good = counter.token("good");
    let revoked = counter.token(REVOKED_JTI);
    assert!(wait_until(Duration::from_secs(10), || status(lds.envoy(), &good) == 200));
    let polls_before = counter.fetches().polls;
    let start = Instant::now();
    let mut warm = 0;
    for i in 0..50 {
        lds.reload(&FetchCounter::plugin_config(&format!("reload-{i}")))
            .unwrap_or_else(|e| panic!("{e}"));
        // at once after the reload: the state is there (no 503 window)
        for _ in 0..4 {
            assert_eq!(status(lds.envoy(), &good), 200, "after reload {i}");
        }
        assert_eq!(status(lds.envoy(), &revoked), 401, "after reload {i}");
        if i == 9 {
            warm = lds.allocated_bytes();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let polls = counter.fetches().polls - polls_before;
    eprintln!("50 reloads in {secs:.1} s: {polls} polls");
    assert!(
        polls <= secs.ceil() as usize + 2,
        "{polls} polls in {secs:.1} s: reloads polled again"
    );
    // let the old listeners drain, then compare with the tenth reload's
    std::thread::sleep(Duration::from_secs(2));
    let end = lds.allocated_bytes();
    eprintln!("allocated after 10 reloads: {warm} B, after 50: {end} B");
    assert!(warm > 0);
    assert!(
        end < warm + 4 * 1024 * 1024,
        "memory grew by {} B over 40 reloads",
        end.saturating_sub(warm)
    );
}
