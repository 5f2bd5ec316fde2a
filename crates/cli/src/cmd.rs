//! One module per subcommand.

pub(crate) mod admin;
pub(crate) mod analyze;
pub(crate) mod control;
pub(crate) mod describe;
pub(crate) mod explain;
pub(crate) mod proxy;
pub(crate) mod proxy_config;
pub(crate) mod proxy_status;
pub(crate) mod sample_app;
pub(crate) mod up;
pub(crate) mod validate;
pub(crate) mod version;

/// Logs to stderr (stdout carries access logs); the filter comes from `SKIFF_LOG`, then
/// `RUST_LOG`, else `info`.
pub(crate) fn init_tracing() {
    let filter = std::env::var("SKIFF_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr closed, e.g. the reader of a pipe
        // is gone) is dropped; reporting that on stderr again would panic.
        .log_internal_errors(false)
        .try_init();
}
