//! `skiff version`: this CLI's version, the running control plane's and its proxies'
//! (when one answers at `--control`), and every kind skiff reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use skiff_api::Kind;

use super::admin;

/// Arguments of `skiff version`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print only the version number.
    #[arg(long)]
    short: bool,
    /// The control plane's debug HTTP address, asked for its version and its proxies'.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    if args.short {
        println!("{version}");
        return Ok(());
    }
    println!("client version: {version}");
    let runtime = admin::runtime()?;
    let live = runtime.block_on(async {
        let index: serde_json::Value = admin::control_json(args.control, "/debug").await?;
        let rows = admin::proxies(args.control).await?;
        anyhow::Ok((index, rows))
    });
    match live {
        Ok((index, rows)) => {
            println!(
                "control plane version: {} ({})",
                index["version"]
                    .as_str()
                    .unwrap_or("unknown (older than this CLI)"),
                args.control
            );
            let mut versions: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.connected) {
                versions
                    .entry(r.proxy_version.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default()
                    .push(&r.proxy);
            }
            if versions.is_empty() {
                println!("data plane version: no proxy connected");
            }
            for (v, proxies) in versions {
                println!(
                    "data plane version: {v} ({} proxies: {})",
                    proxies.len(),
                    proxies.join(", ")
                );
            }
        }
        Err(e) => println!(
            "control plane version: not reachable at {} ({e:#})",
            args.control
        ),
    }
    println!("reads:");
    print!("{}", kinds());
    Ok(())
}

/// One line per API group and version set: `networking.istio.io/{v1,v1beta1,v1alpha3}:
/// ServiceEntry, ...`.
fn kinds() -> String {
    let mut groups: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for kind in Kind::ALL {
        let group = if kind.group().is_empty() {
            "core".to_owned()
        } else {
            kind.group().to_owned()
        };
        let versions = kind.versions().join(",");
        groups
            .entry((group, versions))
            .or_default()
            .push(kind.as_str());
    }
    let mut out = String::new();
    for ((group, versions), kinds) in groups {
        let prefix = if group == "core" {
            String::new()
        } else {
            format!("{group}/")
        };
        out.push_str(&format!("  {prefix}{{{versions}}}: {}\n", kinds.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_is_listed_with_its_group() {
        let k = super::kinds();
        assert!(k.contains("  apps/{v1}: Deployment\n"), "{k}");
        assert!(k.contains("  {v1}: Namespace, Service, Pod\n"), "{k}");
        assert!(
            k.contains("networking.istio.io/{v1,v1beta1,v1alpha3}: ServiceEntry"),
            "{k}"
        );
        for kind in skiff_api::Kind::ALL {
            assert!(k.contains(kind.as_str()), "{kind:?} missing: {k}");
        }
    }
}
