//! Logging: a `tracing` subscriber filtered by `RUST_LOG` (default `info,wxgate=info`), on stderr.
//!
//! `log_format = "json"` is not available yet: tracing-subscriber's `json` feature is not
//! enabled, so JSON falls back to text with one warning at start-up.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,wxgate=info";

/// Installs the global subscriber. Later calls (tests, a second `init`) change nothing.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e.to_string())),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .compact()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok();
    if !installed {
        return;
    }
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "RUST_LOG is invalid, using {DEFAULT_FILTER:?}; fix it, e.g. RUST_LOG=info,wxgate=debug");
    }
    if format == LogFormat::Json {
        tracing::warn!("log_format \"json\" is not supported by this build; logging as text");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_harmless() {
        init(LogFormat::Text);
        init(LogFormat::Json);
        tracing::info!("still logging");
    }
}
