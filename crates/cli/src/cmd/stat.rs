//! `skiff stat workloads|services` and `skiff top`: the golden metrics of the mesh
//! from the proxies' own metrics, as `linkerd viz stat` and `linkerd viz top` show
//! them. `stat` measures over a window and prints one table; `top` keeps measuring and
//! redraws the busiest edges of the service graph.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use super::admin::{Output, table};
use super::stats::{
    self, Delta, Golden, Node, Scraped, Scraper, Window, WorkloadId, figure, golden_json, millis,
    percent,
};

/// What `skiff stat` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Inbound requests per workload, as its own proxy counted them.
    #[value(alias = "workload", alias = "wl")]
    Workloads,
    /// Requests per service: what its workloads' proxies counted, and what callers saw
    /// fail before a workload answered (faults, no endpoint).
    #[value(alias = "service", alias = "svc")]
    Services,
}

/// Arguments of `skiff stat`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatArgs {
    /// What to count.
    kind: Kind,
    /// Only this namespace (default: every namespace).
    #[arg(short, long)]
    namespace: Option<String>,
    /// How long to measure: `10s`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    window: Duration,
    /// The control plane's debug HTTP address (it lists the proxies to scrape).
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
    /// `table` or `json`.
    #[arg(short, long, default_value = "table")]
    output: Output,
}

/// Arguments of `skiff top`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// Only edges from or to this namespace (default: every namespace).
    #[arg(short, long)]
    namespace: Option<String>,
    /// How often to scrape and redraw: `2s`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
    /// The rates are over this much of the last traffic: `10s`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    window: Duration,
    /// Show at most this many edges.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(long)]
    iterations: Option<u64>,
    /// The control plane's debug HTTP address (it lists the proxies to scrape).
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
    /// `table` (redrawn in place on a terminal) or `json` (one object per refresh,
    /// one per line).
    #[arg(short, long, default_value = "table")]
    output: Output,
}

/// `500ms`, `10s`, `2m`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("{s:?} is not a duration: write 500ms, 10s or 2m")),
    }
}

pub(crate) fn run_stat(args: StatArgs) -> anyhow::Result<()> {
    if args.output == Output::Yaml {
        bail!("skiff stat prints a table or json");
    }
    super::admin::runtime()?.block_on(stat(args))
}

async fn stat(args: StatArgs) -> anyhow::Result<()> {
    let scraper = Scraper::new(args.control);
    let (first, scraped) = scraper.scrape().await?;
    if scraped.is_empty() {
        bail!(
            "the control plane at {} lists no proxies to scrape",
            args.control
        );
    }
    // On stderr, so that a script can start its traffic once the window is open.
    eprintln!(
        "skiff stat: scraped {} proxies; measuring for {:?}",
        scraped.len(),
        args.window
    );
    tokio::time::sleep(args.window).await;
    let (last, scraped) = scraper.scrape().await?;
    let delta = last.since(&first);
    let rows = match args.kind {
        Kind::Workloads => workload_rows(&delta, &scraped, args.namespace.as_deref()),
        Kind::Services => service_rows(&delta, args.namespace.as_deref()),
    };
    let unreachable: Vec<&Scraped> = scraped.iter().filter(|s| s.error.is_some()).collect();
    match args.output {
        Output::Json => {
            let value = json!({
                "kind": match args.kind { Kind::Workloads => "workloads", Kind::Services => "services" },
                "window_seconds": delta.seconds,
                "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
                "unreachable": unreachable,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        _ => {
            print!("{}", render(&rows, args.namespace.is_none()));
            if rows.is_empty() {
                println!("(no traffic and no workloads in the window)");
            }
            for s in unreachable {
                println!(
                    "(not scraped: {}: {})",
                    s.proxy,
                    s.error.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// One line of `skiff stat`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `(scraped, known)` proxies; `None` for a service.
    pub(crate) meshed: Option<(usize, usize)>,
    pub(crate) golden: Golden,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        let mut v = golden_json(&self.golden);
        v["namespace"] = json!(self.namespace);
        v["name"] = json!(self.name);
        v["meshed"] = json!(self.meshed.map(|(up, all)| format!("{up}/{all}")));
        v
    }
}

/// A row per workload with a proxy or with inbound traffic, in `namespace` if given.
pub(crate) fn workload_rows(
    delta: &Delta,
    scraped: &[Scraped],
    namespace: Option<&str>,
) -> Vec<Row> {
    let mut golden = delta.by_workload();
    for s in scraped {
        golden
            .entry(WorkloadId {
                namespace: s.namespace.clone(),
                name: s.workload.clone(),
            })
            .or_insert_with(|| Golden {
                seconds: delta.seconds,
                ..Golden::default()
            });
    }
    golden
        .into_iter()
        .filter(|(w, _)| namespace.is_none_or(|ns| w.namespace == ns))
        .map(|(w, g)| Row {
            meshed: stats::meshed(scraped, &w),
            namespace: w.namespace,
            name: w.name,
            golden: g,
        })
        .collect()
}

/// A row per service with traffic, in `namespace` if given.
pub(crate) fn service_rows(delta: &Delta, namespace: Option<&str>) -> Vec<Row> {
    delta
        .by_service()
        .into_iter()
        .filter(|((_, ns), _)| namespace.is_none_or(|n| ns == n))
        .map(|((host, ns), g)| Row {
            namespace: ns,
            name: host,
            meshed: None,
            golden: g,
        })
        .collect()
}

/// The table of `skiff stat`.
pub(crate) fn render(rows: &[Row], with_namespace: bool) -> String {
    let mut header = vec![
        "NAME", "MESHED", "SUCCESS", "RPS", "P50", "P90", "P99", "MTLS",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let g = &r.golden;
            let traffic = g.requests() > 0;
            let mut line = vec![
                r.name.clone(),
                r.meshed
                    .map_or_else(|| "-".to_owned(), |(up, all)| format!("{up}/{all}")),
                percent(g.success_rate()),
                if traffic { figure(g.rps()) } else { "-".into() },
                millis(g.quantile(0.5)),
                millis(g.quantile(0.9)),
                millis(g.quantile(0.99)),
                percent(g.mtls_share()),
            ];
            if with_namespace {
                line.insert(0, r.namespace.clone());
            }
            line
        })
        .collect();
    table(&header, &lines)
}

/// The busiest edges of the last `window`, most requests per second first.
pub(crate) fn busiest(
    delta: &Delta,
    namespace: Option<&str>,
    limit: usize,
) -> Vec<(Node, Node, Golden)> {
    let mut edges: Vec<(Node, Node, Golden)> = delta
        .edges()
        .into_iter()
        .filter(|((from, to), _)| {
            namespace.is_none_or(|ns| from.namespace() == ns || to.namespace() == ns)
        })
        .map(|((from, to), g)| (from, to, g))
        .collect();
    edges.sort_by(|a, b| {
        b.2.counts
            .requests
            .total_cmp(&a.2.counts.requests)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    edges.truncate(limit);
    edges
}

/// The table of `skiff top`.
pub(crate) fn render_top(edges: &[(Node, Node, Golden)]) -> String {
    let lines: Vec<Vec<String>> = edges
        .iter()
        .map(|(from, to, g)| {
            vec![
                from.label(),
                to.label(),
                figure(g.rps()),
                g.requests().to_string(),
                percent(g.success_rate()),
                millis(g.quantile(0.5)),
                millis(g.quantile(0.99)),
                percent(g.mtls_share()),
            ]
        })
        .collect();
    table(
        &[
            "SOURCE",
            "DESTINATION",
            "RPS",
            "REQUESTS",
            "SUCCESS",
            "P50",
            "P99",
            "MTLS",
        ],
        &lines,
    )
}

pub(crate) fn run_top(args: TopArgs) -> anyhow::Result<()> {
    if args.output == Output::Yaml {
        bail!("skiff top prints a table or json");
    }
    super::admin::runtime()?.block_on(top(args))
}

async fn top(args: TopArgs) -> anyhow::Result<()> {
    let scraper = Scraper::new(args.control);
    let keep = (args.window.as_secs_f64() / args.interval.as_secs_f64()).ceil() as usize + 1;
    let mut window = Window::new(keep);
    let redraw = args.output == Output::Table && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    loop {
        tick.tick().await;
        let (snapshot, scraped) = match scraper.scrape().await {
            Ok(s) => s,
            Err(e) if shown > 0 => {
                eprintln!("skiff top: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        window.push(snapshot);
        if window.len() < 2 {
            if !redraw {
                eprintln!(
                    "skiff top: scraped {} proxies; the first figures come in {:?}",
                    scraped.len(),
                    args.interval
                );
            }
            continue;
        }
        let delta = window.last(args.window);
        let edges = busiest(&delta, args.namespace.as_deref(), args.limit);
        let mut out = std::io::stdout().lock();
        match args.output {
            Output::Json => {
                let value = json!({
                    "window_seconds": delta.seconds,
                    "edges": edges.iter().map(|(from, to, g)| {
                        let mut v = golden_json(g);
                        v["source"] = json!(from.label());
                        v["destination"] = json!(to.label());
                        v
                    }).collect::<Vec<_>>(),
                });
                writeln!(out, "{value}")?;
            }
            _ => {
                if redraw {
                    // Home and clear, then the table.
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                let down = scraped.iter().filter(|s| s.error.is_some()).count();
                writeln!(
                    out,
                    "skiff top: the busiest edges over the last {:.0}s ({} proxies scraped{}), every {:?}; Ctrl-C stops",
                    delta.seconds,
                    scraped.len() - down,
                    if down > 0 {
                        format!(", {down} not answering")
                    } else {
                        String::new()
                    },
                    args.interval
                )?;
                write!(out, "{}", render_top(&edges))?;
                if edges.is_empty() {
                    writeln!(out, "(no traffic)")?;
                }
                if !redraw {
                    writeln!(out)?;
                }
            }
        }
        out.flush()?;
        shown += 1;
        if args.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
