//! Logs: `tracing`, written to standard error as one JSON object per line
//! (`timestamp`, `level`, `target`, the event's fields, and the request's span with
//! its `request_id` when there is one).

use tracing::level_filters::LevelFilter;

/// The environment variable holding the log level (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub const LOG_LEVEL_ENV: &str = "EDGE_AUTH_LOG";

/// Parses a level; `None` for an unknown name.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Installs the JSON logger at `level` (once; later calls change nothing).
pub fn init(level: LevelFilter) {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}
