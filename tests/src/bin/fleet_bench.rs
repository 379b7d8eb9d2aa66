//! `make bench-fleet`: a fleet on one machine (issue 14), measured. Three Envoys (the built
//! filter) in front of one upstream, one real auth service, steady load on all of them;
//! see bench/README.md. Writes the report to `$FLEET_OUT` (default
//! bench/results/fleet-latest.md) and prints it.
//!
//! Knobs (environment): FLEET_CONCURRENCIES (default "1 2 4"), FLEET_WARMUP_S (3),
//! FLEET_STEADY_S (20: the counted window), FLEET_POLL_S (1: revocation_poll_s),
//! FLEET_TRIALS (20 revocations of each kind), FLEET_DEADLINE_S (5: how long a revocation
//! may take before it is reported "not within"), FLEET_GIVE_UP (3: a kind whose first this
//! many trials all miss the deadline is not tried further), FLEET_KEY_CACHE_TTL_S (300:
//! api_keys.max_cache_ttl_s), FLEET_REVOKE_CONCURRENCY (2),
//! FLEET_OUT.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use edge_auth_e2e::fleet::{revoke, Calls, Credential, Fleet, FleetOptions, Load, Revocation, SIGNATURE_VERIFICATIONS};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(args)
        .current_dir(edge_auth_e2e::workspace_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn credentials(fleet: &Fleet) -> Vec<Credential> {
    let mut creds = Vec::new();
    for i in 0..2 {
        let (key, _) = fleet.key("acme", &format!("svc-{i}"));
        creds.push(Credential::Token(fleet.session(&key, &format!("user-{i}"))));
        creds.push(Credential::Key(key));
    }
    for c in &creds {
        if !fleet.accepted_everywhere(c, 4, Duration::from_secs(15)) {
            eprintln!("fleet-bench: {c:?} is not accepted at every edge");
            std::process::exit(1);
        }
    }
    creds
}

fn per_min(n: u64, window: Duration) -> String {
    format!("{:.1}", n as f64 * 60.0 / window.as_secs_f64())
}

fn main() {
    let started = Instant::now();
    let concurrencies: Vec<u32> = std::env::var("FLEET_CONCURRENCIES")
        .unwrap_or_else(|_| "1 2 4".into())
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    let warmup = Duration::from_secs(knob("FLEET_WARMUP_S", 3));
    let window = Duration::from_secs(knob("FLEET_STEADY_S", 20).max(1));
    let poll_s = knob("FLEET_POLL_S", 1).max(1);
    let trials = knob("FLEET_TRIALS", 20) as usize;
    let deadline = Duration::from_secs(knob("FLEET_DEADLINE_S", 5));
    let give_up = knob("FLEET_GIVE_UP", 3) as usize;
    let key_ttl = knob("FLEET_KEY_CACHE_TTL_S", 300);
    let revoke_concurrency = knob("FLEET_REVOKE_CONCURRENCY", 2) as u32;
    let out = std::env::var("FLEET_OUT").unwrap_or_else(|_| {
        edge_auth_e2e::workspace_root()
            .join("bench/results/fleet-latest.md")
            .display()
            .to_string()
    });
    let load_before = loadavg();
    let options = |concurrency| FleetOptions {
        envoys: 3,
        concurrency,
        revocation_poll_s: poll_s,
        key_cache_ttl_s: key_ttl,
    };

    // a. and c.: what the service is asked at steady state; signature verifications
    let mut steady = String::new();
    let mut verifications = String::new();
    for &c in &concurrencies {
        eprintln!("fleet-bench: --concurrency {c}");
        let fleet = Fleet::start(options(c));
        let creds = credentials(&fleet);
        let tokens = creds.iter().filter(|c| matches!(c, Credential::Token(_))).count() as u64;
        for flood in [false, true] {
            let (calls, flooded) = fleet.steady_calls(&creds, flood, warmup, window);
            for (i, k) in calls.iter().enumerate() {
                let Calls {
                    lookups,
                    feed,
                    jwks,
                    other,
                } = *k;
                let _ = writeln!(
                    steady,
                    "| {c} | {} | {i} | {} | {} | {} | {} | {} | {} |",
                    if flood { "yes" } else { "no" },
                    per_min(lookups, window),
                    per_min(feed, window),
                    per_min(jwks, window),
                    per_min(other, window),
                    per_min(k.total(), window),
                    if flood { per_min(flooded, window) } else { "-".into() },
                );
            }
        }
        let sigs = fleet.signature_verifications();
        for (i, misses) in fleet.token_cache_misses().iter().enumerate() {
            let _ = writeln!(
                verifications,
                "| {c} | {i} | {tokens} | {} | {misses} | {:.1} |",
                sigs[i].map_or("no counter".into(), |v| format!(
                    "{v} ({:.1}/token)",
                    v as f64 / tokens as f64
                )),
                *misses as f64 / tokens as f64
            );
        }
    }

    // b.: revocations, one edge restarted during the run
    eprintln!("fleet-bench: revocations");
    let mut fleet = Fleet::start(options(revoke_concurrency));
    let creds = credentials(&fleet);
    let revocations = {
        let _load = Load::start(&fleet.addrs, creds, 1, Duration::from_millis(50));
        let mut rows = String::new();
        for kind in Revocation::ALL {
            let mut times = Vec::new();
            let mut missed = 0;
            let mut tried = 0;
            for n in 0..trials {
                if kind == Revocation::ALL[0] && n == trials / 2 {
                    fleet.restart(fleet.edges.len() - 1);
                }
                if n == give_up && times.is_empty() {
                    break;
                }
                tried += 1;
                let (cred, acknowledged) = revoke(&fleet, kind, n);
                match fleet.time_to_refusal(&cred, acknowledged, deadline, edge_auth_e2e::IN_A_ROW) {
                    Some(t) => times.push(t.as_secs_f64()),
                    None => missed += 1,
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let q = |p: f64| {
                times
                    .get(((times.len() as f64 - 1.0) * p).round() as usize)
                    .map_or("-".into(), |t| format!("{t:.2}"))
            };
            let _ = writeln!(
                rows,
                "| {} | {tried} of {trials} | {} | {missed} | {} | {} | {} |",
                kind.name(),
                times.len(),
                q(0.0),
                q(0.5),
                q(1.0)
            );
        }
        rows
    };

    let mut report = String::new();
    let _ = writeln!(report, "# Fleet on one machine (`make bench-fleet`)\n");
    let _ = writeln!(
        report,
        "Commit {} ({}), {} UTC; {} CPUs, load average {load_before} at the start, {} at the end; \
         {:.0} s. Three Envoys, each with the built filter, one `edge-auth-service` ($EDGE_AUTH_SERVICE_BIN) \
         (SQLite), one echo upstream. Each Envoy reaches the service through a counting proxy of its \
         own. revocation_poll_s = {poll_s}, api_keys.max_cache_ttl_s = {key_ttl}.\n",
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["log", "-1", "--format=%s"]),
        git(&["log", "-1", "--format=%cd", "--date=iso"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        report,
        "## a. Auth-service requests per minute at steady state, per Envoy\n\n\
         Load: 2 threads per Envoy, one request every 20 ms each, on fresh connections, cycling \
         2 session tokens and 2 API keys (all cached after the warm-up of {} s); counted over {} s. \
         Flood: 2 more threads per Envoy sending invented `sk_` keys (64 random hex digits, each new) \
         back to back.\n\n\
         | --concurrency | flood | Envoy | lookups/min | feed polls/min | JWKS/min | other/min | total/min | flood req/min |\n\
         |---|---|---|---|---|---|---|---|---|\n{steady}",
        warmup.as_secs(),
        window.as_secs()
    );
    let _ = writeln!(
        report,
        "## b. Revocation: acknowledgement to the last edge refusing\n\n\
         --concurrency {revoke_concurrency}; load on every Envoy throughout; Envoy 2 restarted (a new \
         process) after {} of the first kind's trials. Every edge is polled on fresh connections every \
         10 ms; an edge refuses when {} requests in a row get 401 (the first of them is the time); deadline {} s. A kind whose first \
         {give_up} trials all miss the deadline is not tried further. Seconds:\n\n\
         | kind | tried | refused within the deadline | not within {} s | min | median | max |\n\
         |---|---|---|---|---|---|---|\n{revocations}",
        trials / 2,
        edge_auth_e2e::IN_A_ROW,
        deadline.as_secs(),
        deadline.as_secs()
    );
    let _ = writeln!(
        report,
        "## c. Signature verifications per distinct token, per Envoy\n\n\
         `{SIGNATURE_VERIFICATIONS}` when the filter has it (else \"no counter\"), and \
         `edge_auth.token_cache.miss` (all workers) per distinct token, after part a.\n\n\
         | --concurrency | Envoy | distinct tokens | signature verifications | token_cache.miss | misses/token |\n\
         |---|---|---|---|---|---|\n{verifications}"
    );
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("fleet-bench: cannot write {out}: {e}");
        std::process::exit(1);
    }
    print!("{report}");
    eprintln!("fleet-bench: wrote {out}");
}
