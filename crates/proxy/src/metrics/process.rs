//! The proxy's own process metrics, as Prometheus clients name them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_start_time_seconds`),
//! read from `/proc/self` at each scrape. Where `/proc` is missing, none are shown.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` on every scrape.
#[derive(Debug)]
pub(crate) struct Process {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`; 100 on every Linux platform
    /// skiff runs on).
    ticks: f64,
    page_size: f64,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            ticks: 100.0,
            page_size: 4096.0,
        }
    }
}

/// What `/proc/self/stat` tells, in seconds and bytes.
#[derive(Debug, PartialEq)]
pub(crate) struct Stat {
    pub(crate) cpu_seconds: f64,
    pub(crate) virtual_bytes: f64,
    pub(crate) resident_bytes: f64,
    /// Since boot.
    pub(crate) start_seconds: f64,
}

impl Process {
    /// Parses `/proc/self/stat`: the fields after the command name (which may hold
    /// spaces, so the parse starts after its closing parenthesis).
    pub(crate) fn parse_stat(&self, stat: &str) -> Option<Stat> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is f[0]; utime is field 14, stime 15, starttime 22, vsize 23,
        // rss 24.
        let num = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
        Some(Stat {
            cpu_seconds: (num(14)? + num(15)?) / self.ticks,
            start_seconds: num(22)? / self.ticks,
            virtual_bytes: num(23)?,
            resident_bytes: num(24)? * self.page_size,
        })
    }
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| self.parse_stat(&s))
        else {
            return Ok(());
        };
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as i64;
        let counter = ConstCounter::new(stat.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, f64); 3] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                boot_time().unwrap_or(0.0) + stat.start_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        ConstGauge::new(fds).encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
