//! Logging (tracing to stderr) and the Prometheus recorder.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub mod format;
pub mod writer;

use crate::layers::metrics::REQUEST_DURATION;

/// Logs go to stderr (stdout may carry protocol messages), filtered by `RUST_LOG`
/// (default `info`), as text ([`format`]: control characters escaped, no colours) or,
/// with `json`, one JSON object per line. Lines are
/// buffered and written in batches (see [`writer`]); keep the returned guard until
/// exit, since dropping it writes what is still buffered.
pub fn init_logging(json: bool) -> writer::FlushGuard {
    init_logging_to(json, None)
}

/// The same, logging to `file` instead of stderr when given (`--log-file`).
pub fn init_logging_to(json: bool, file: Option<std::fs::File>) -> writer::FlushGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = writer::BufferedStderr::to_file(file);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(writer);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.event_format(format::PlainText).fmt_fields(format::PlainFields).try_init()
    };
    if let Err(e) = result {
        eprintln!("shadowcat: logging already initialised: {e}");
    }
    guard
}

/// Latency buckets in seconds: 100 us to 60 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the global Prometheus recorder and returns the handle `/metrics` renders.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
