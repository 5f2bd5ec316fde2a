//! One module per subcommand.

pub(crate) mod admin;
pub(crate) mod analyze;
pub(crate) mod control;
pub(crate) mod dashboard;
pub(crate) mod describe;
pub(crate) mod explain;
pub(crate) mod proxy;
pub(crate) mod proxy_config;
pub(crate) mod proxy_status;
pub(crate) mod sample_app;
pub(crate) mod stat;
pub(crate) mod stats;
pub(crate) mod up;
pub(crate) mod validate;
pub(crate) mod version;

/// Logs to stderr (stdout carries access logs); the filter comes from `SKIFF_LOG`, then
/// `RUST_LOG`, else `info`. The filter can be changed while the process runs: a proxy's
/// admin endpoint does it (`POST /logging?level=debug`, `skiff proxy-config log`).
pub(crate) fn init_tracing() {
    let filter = std::env::var("SKIFF_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(|| CappedLines(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr closed, e.g. the reader of a pipe
        // is gone) is dropped; reporting that on stderr again would panic.
        .log_internal_errors(false)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    if builder.try_init().is_ok() {
        skiff_proxy::set_log_control(Box::new(ReloadableFilter(handle)));
    }
}

/// The process's log filter, behind tracing-subscriber's reload handle.
pub(crate) struct ReloadableFilter<S>(
    pub(crate) tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
);

impl<S: 'static> skiff_proxy::LogControl for ReloadableFilter<S> {
    fn current(&self) -> String {
        self.0
            .with_current(ToString::to_string)
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Raises this process's open-file limit (soft) to its hard maximum, so that a flood
/// of connections meets the proxy's own connection cap before the kernel's; returns the
/// limit now in force, if it could be read.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return Some(hard),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        }
    }
    Some(soft)
}

/// Longest log line written; a longer one is cut, with a note of how much was cut, so
/// that text a client sent cannot flood the log.
pub(crate) const MAX_LOG_LINE: usize = 16 * 1024;

/// A writer that cuts each write (the formatter writes a whole line at once) to
/// [`MAX_LOG_LINE`] bytes.
pub(crate) struct CappedLines<W>(pub(crate) W);

impl<W: std::io::Write> std::io::Write for CappedLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= MAX_LOG_LINE {
            return self.0.write_all(buf).map(|()| buf.len());
        }
        let mut cut = MAX_LOG_LINE;
        // Not in the middle of a UTF-8 character.
        while cut > 0 && (buf[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
        self.0.write_all(&buf[..cut])?;
        writeln!(self.0, "… ({} bytes cut)", buf.len() - cut)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod capped_tests {
    use std::io::Write;

    use super::{CappedLines, MAX_LOG_LINE};

    #[test]
    fn long_lines_are_cut_short_ones_kept() {
        let mut out = CappedLines(Vec::new());
        out.write_all(b"short\n").unwrap();
        let long = "é".repeat(MAX_LOG_LINE);
        out.write_all(long.as_bytes()).unwrap();
        let text = String::from_utf8(out.0).expect("still UTF-8");
        assert!(text.starts_with("short\n"));
        assert!(text.len() < MAX_LOG_LINE + 100, "{}", text.len());
        assert!(text.ends_with(&format!(
            "… ({} bytes cut)\n",
            2 * MAX_LOG_LINE - MAX_LOG_LINE
        )));
    }
}
