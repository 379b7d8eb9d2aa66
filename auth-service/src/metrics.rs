//! The service's metrics, in the Prometheus text format (`GET /metrics`).
//!
//! A fixed set: every label takes values from a fixed list (never from a request),
//! so the output's size is bounded. Counters and histograms are atomics; rendering
//! reads them without a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A counter family: one counter per tuple of label values, all declared up front.
pub struct Counters {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Vec<(Vec<&'static str>, AtomicU64)>,
}

impl Counters {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        values: &[&[&'static str]],
    ) -> Self {
        Counters {
            name,
            help,
            labels,
            series: values.iter().map(|v| (v.to_vec(), AtomicU64::new(0))).collect(),
        }
    }

    /// Adds one to the series with these label values (an undeclared tuple is ignored).
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    pub fn add(&self, values: &[&str], n: u64) {
        if let Some((_, c)) = self.series.iter().find(|(v, _)| v.as_slice() == values) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, values: &[&str]) -> u64 {
        self.series
            .iter()
            .find(|(v, _)| v.as_slice() == values)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (values, c) in &self.series {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                labels(self.labels, values, None),
                c.load(Ordering::Relaxed)
            );
        }
    }
}

fn labels(names: &[&str], values: &[&str], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names.iter().zip(values).map(|(n, v)| format!("{n}=\"{v}\"")).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

struct Series {
    values: Vec<&'static str>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A latency histogram family (seconds).
pub struct Histograms {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Vec<Series>,
}

impl Histograms {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        values: &[&[&'static str]],
    ) -> Self {
        Histograms {
            name,
            help,
            labels,
            series: values
                .iter()
                .map(|v| Series {
                    values: v.to_vec(),
                    buckets: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
                    count: AtomicU64::new(0),
                    sum_ns: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    pub fn observe(&self, values: &[&str], d: Duration) {
        let Some(s) = self.series.iter().find(|s| s.values.as_slice() == values) else {
            return;
        };
        let secs = d.as_secs_f64();
        for (b, c) in BUCKETS.iter().zip(&s.buckets) {
            if secs <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        for s in &self.series {
            for (b, c) in BUCKETS.iter().zip(&s.buckets) {
                let le = b.to_string();
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    self.name,
                    labels(self.labels, &s.values, Some(&le)),
                    c.load(Ordering::Relaxed)
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let l = labels(self.labels, &s.values, None);
            let inf = labels(self.labels, &s.values, Some("+Inf"));
            let sum = s.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{}_bucket{inf} {count}", self.name);
            let _ = writeln!(out, "{}_sum{l} {sum}", self.name);
            let _ = writeln!(out, "{}_count{l} {count}", self.name);
        }
    }
}

/// A gauge without labels.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, n: i64) {
        self.value.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} gauge\n{} {}",
            self.name,
            self.help,
            self.name,
            self.name,
            self.get()
        );
    }
}

const TOKEN_KINDS: [&str; 4] = ["admin", "service", "refresh", "access"];
const TOKEN_RESULTS: [&str; 3] = ["valid", "invalid", "rate_limited"];

fn product(a: &[&'static str], b: &[&'static str]) -> Vec<[&'static str; 2]> {
    a.iter().flat_map(|x| b.iter().map(move |y| [*x, *y])).collect()
}

fn refs<'a, const N: usize>(v: &'a [[&'static str; N]]) -> Vec<&'a [&'static str]> {
    v.iter().map(|x| x.as_slice()).collect()
}

pub struct Metrics {
    /// kind (admin, service, refresh, access) x result (valid, invalid, rate_limited).
    pub token_validations: Counters,
    pub token_validation_duration: Histograms,
    /// kind (admin, service): valid tokens that were the previous one of a rollover.
    pub previous_token_uses: Counters,
    /// result: valid, invalid, rate_limited.
    pub api_key_validations: Counters,
    /// result: created, refused.
    pub session_creations: Counters,
    /// status: valid, unknown, revoked, expired, error.
    pub lookups: Counters,
    pub lookup_duration: Histograms,
    /// answer: snapshot, incremental, error.
    pub feed_requests: Counters,
    pub feed_duration: Histograms,
    /// class: 2xx, 3xx, 4xx, 5xx.
    pub http_requests: Counters,
    pub http_request_duration: Histograms,
    pub connections_open: Gauge,
    /// Connections closed for slowness (`header`, `body`) or an oversized head (`too_large`).
    pub connection_timeouts: Counters,
    pub audit_failure_rows: Counters,
    pub audit_failures_pending: Gauge,
    pub db_write_errors: Counters,
    pub audit_rows_pruned: Counters,
    pub db_writes_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let token = product(&TOKEN_KINDS, &TOKEN_RESULTS);
        let kinds: Vec<[&'static str; 1]> = TOKEN_KINDS.iter().map(|k| [*k]).collect();
        let one = |v: &[&'static str]| -> Vec<[&'static str; 1]> { v.iter().map(|x| [*x]).collect() };
        let none: &[&[&'static str]] = &[&[]];
        Metrics {
            token_validations: Counters::new(
                "auth_token_validations_total",
                "Bearer, refresh and access tokens checked, by kind and result.",
                &["kind", "result"],
                &refs(&token),
            ),
            token_validation_duration: Histograms::new(
                "auth_token_validation_duration_seconds",
                "Time to check a token, by kind.",
                &["kind"],
                &refs(&kinds),
            ),
            previous_token_uses: Counters::new(
                "auth_previous_token_uses_total",
                "Admin and service tokens accepted as the previous token of a rollover, by kind.",
                &["kind"],
                &refs(&one(&["admin", "service"])),
            ),
            api_key_validations: Counters::new(
                "auth_api_key_validations_total",
                "API keys presented to the SDK endpoints, by result.",
                &["result"],
                &refs(&one(&TOKEN_RESULTS)),
            ),
            session_creations: Counters::new(
                "auth_session_creations_total",
                "Session creations, by result.",
                &["result"],
                &refs(&one(&["created", "refused"])),
            ),
            lookups: Counters::new(
                "auth_api_key_lookups_total",
                "The edge's API-key lookups, by answer.",
                &["status"],
                &refs(&one(&["valid", "unknown", "revoked", "expired", "error"])),
            ),
            lookup_duration: Histograms::new(
                "auth_api_key_lookup_duration_seconds",
                "Time to answer a lookup (database included).",
                &[],
                none,
            ),
            feed_requests: Counters::new(
                "auth_revocation_feed_requests_total",
                "Revocation feed polls, by answer.",
                &["answer"],
                &refs(&one(&["snapshot", "incremental", "error"])),
            ),
            feed_duration: Histograms::new(
                "auth_revocation_feed_duration_seconds",
                "Time to answer a feed poll (database included).",
                &[],
                none,
            ),
            http_requests: Counters::new(
                "auth_http_requests_total",
                "HTTP requests answered, by status class.",
                &["class"],
                &refs(&one(&["1xx", "2xx", "3xx", "4xx", "5xx"])),
            ),
            http_request_duration: Histograms::new(
                "auth_http_request_duration_seconds",
                "Time from a request's headers to its response.",
                &[],
                none,
            ),
            connections_open: Gauge::new("auth_http_connections_open", "HTTP connections open now."),
            connection_timeouts: Counters::new(
                "auth_http_connections_refused_total",
                "Requests refused at the connection level: headers or body too slow, a head too large, \
                 or a connection from a limited client closed at accept (public listener).",
                &["reason"],
                &refs(&one(&["header", "body", "too_large", "limited"])),
            ),
            audit_failure_rows: Counters::new(
                "auth_audit_failure_rows_total",
                "Aggregated failed-authentication rows written to the audit log.",
                &[],
                none,
            ),
            audit_failures_pending: Gauge::new(
                "auth_audit_failures_pending",
                "Failed authentications counted and not yet written to the audit log.",
            ),
            db_write_errors: Counters::new(
                "auth_db_write_errors_total",
                "Write transactions that failed: nothing they did was kept, audit record included.",
                &[],
                none,
            ),
            audit_rows_pruned: Counters::new(
                "auth_audit_rows_pruned_total",
                "Audit rows deleted by retention.",
                &[],
                none,
            ),
            db_writes_in_flight: Gauge::new(
                "auth_db_writes_in_flight",
                "Write transactions started and not yet finished.",
            ),
        }
    }

    /// Every metric, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.token_validations.render(&mut out);
        self.token_validation_duration.render(&mut out);
        self.previous_token_uses.render(&mut out);
        self.api_key_validations.render(&mut out);
        self.session_creations.render(&mut out);
        self.lookups.render(&mut out);
        self.lookup_duration.render(&mut out);
        self.feed_requests.render(&mut out);
        self.feed_duration.render(&mut out);
        self.http_requests.render(&mut out);
        self.http_request_duration.render(&mut out);
        self.connections_open.render(&mut out);
        self.connection_timeouts.render(&mut out);
        self.audit_failure_rows.render(&mut out);
        self.audit_failures_pending.render(&mut out);
        self.db_write_errors.render(&mut out);
        self.audit_rows_pruned.render(&mut out);
        self.db_writes_in_flight.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP auth_log_lines_dropped_total Log lines dropped because standard error did not keep up.\n\
             # TYPE auth_log_lines_dropped_total counter\nauth_log_lines_dropped_total {}",
            crate::logging::dropped_lines()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.token_validations.inc(&["admin", "invalid"]);
        m.token_validations.inc(&["admin", "invalid"]);
        m.token_validations.inc(&["nope", "invalid"]);
        m.lookup_duration.observe(&[], Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("auth_token_validations_total{kind=\"admin\",result=\"invalid\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("auth_token_validations_total{kind=\"access\",result=\"valid\"} 0\n"));
        assert!(text.contains("auth_api_key_lookup_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("auth_api_key_lookup_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("auth_api_key_lookup_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("auth_api_key_lookup_duration_seconds_count 1\n"));
        assert!(!text.contains("nope"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
